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
            raise SystemExit(
                f"{Path(__file__).name}: variant {name!r}: {src.name} no longer contains "
                f"{anchor.strip()[:60]!r} exactly once; update the variant"
            )
        text = text.replace(anchor, repl)
    path = tmp / f"{name.replace(' ', '_').replace(',', '')}.bpf.c"
    path.write_text(text)
    return path


class ChainFigures:
    """Programs run together in one tcx chain, an empty program last (the floor), in an
    order that changes every round. Per round (and per `key`, e.g. a rule set): each
    program's ns per packet above the floor when it ran first (right after the network
    stack, as a lone program would), and its difference from `reference` on the same
    packets (paired: the finer figure). `stats(ids)` gives (run_time_ns, run_cnt)."""

    def __init__(self, reference: str, stats) -> None:
        self.reference, self.stats = reference, stats
        self.first: dict[tuple[str, str], list[float]] = {}
        self.paired: dict[tuple[str, str], list[float]] = {}

    def start(self, ids: dict[str, int]) -> None:
        """The window opens: `ids` names every program in the chain, "floor" included."""
        self.ids, self.before = ids, {n: self.stats([i]) for n, i in ids.items()}

    def end(self, lead: str, key: str = "") -> None:
        """The window closes; `lead` ran first."""
        per = {}
        for n, i in self.ids.items():
            ns, runs = self.stats([i])
            per[n] = (ns - self.before[n][0]) / max(1, runs - self.before[n][1])
        self.first.setdefault((lead, key), []).append(per[lead] - per["floor"])
        for n in self.ids:
            if n != "floor":
                self.paired.setdefault((n, key), []).append(per[n] - per[self.reference])
