"""The one cleaning rule for untrusted strings (process names, labels, hostnames, URLs).

Control characters (C0, DEL, C1), bidi controls and other invisible format characters
are replaced by a visible escape like `\\x1b` or `\\u202e`, so text can never move the
cursor, recolour or retitle the terminal, or reorder what the operator reads — and a
newline inside a value cannot fake a line of a multi-line message. The TUI's
`tui/text.py` builds its Rich `Text` from this; collectors use it where they compose
multi-line text (confirmation descriptions) from outside values.
"""

from __future__ import annotations

import unicodedata

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
