"""The one way untrusted strings reach the screen.

Process names, labels, hostnames, URLs and error messages come from outside. They are
never parsed as markup and never allowed to move the cursor, change colours, retitle
the terminal or reorder text: control characters (C0, DEL, C1), bidi controls and
other invisible format characters are replaced by a visible escape like `\\x1b` or
`\\u202e`, so the operator sees that something odd was there.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

# Bidi embeddings/overrides/isolates and marks: can make "txt.exe" read as "exe.txt".
_BIDI = {0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape(ch: str) -> str:
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}"


def _unsafe(ch: str) -> bool:
    cp = ord(ch)
    if cp < 0x20 or 0x7F <= cp <= 0x9F:
        return True
    if cp in _BIDI:
        return True
    # Cf = invisible formatting (zero-width joiners, BOM, tag characters); Cs = lone
    # surrogates from undecodable bytes; Co/Cn = private use and unassigned.
    return unicodedata.category(ch) in ("Cf", "Cs", "Co", "Cn")


def clean(value: object, max_len: int | None = None) -> str:
    """Plain display text for an untrusted value; safe for any terminal."""
    s = value if isinstance(value, str) else str(value)
    if max_len is not None and len(s) > max_len:
        s = s[: max(0, max_len - 1)] + "…"
    if s.isascii() and s.isprintable():
        return s
    return "".join(_escape(ch) if _unsafe(ch) else ch for ch in s)


def safe(value: object, style: str = "", max_len: int | None = None) -> Text:
    """A Rich Text of the cleaned value: markup in it is shown, never interpreted."""
    return Text(clean(value, max_len), style=style, no_wrap=False)
