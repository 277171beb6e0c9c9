"""A/B variants of a BPF source made by text substitution (flows_variants, rules_variants).

The shipped sources carry no experiment switches: a variant names (anchor, replacement)
pairs, and an anchor that is gone or no longer unique fails loudly, so a variant never
silently measures the shipped program.
"""

from __future__ import annotations

from pathlib import Path


def variant_file(src: Path, subs: list[tuple[str, str]], tmp: Path, name: str) -> Path:
    """`src` with every anchor in `subs` replaced, written under `tmp`; SystemExit when
    an anchor does not occur exactly once."""
    text = src.read_text()
    for anchor, repl in subs:
        if text.count(anchor) != 1:
            raise SystemExit(f"{Path(__file__).name}: variant {name!r}: {src.name} no longer contains "
                             f"{anchor.strip()[:60]!r} exactly once; update the variant")
        text = text.replace(anchor, repl)
    path = tmp / f"{name.replace(' ', '_').replace(',', '')}.bpf.c"
    path.write_text(text)
    return path
