"""A screenshot saved where one can be saved, and a toast that says where (or why not).

The current directory first (where the operator ran ebpftop); when it is gone or not
writable, the temporary directory, which exists for root too (Textual's own default,
~/Downloads, often does not).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App


def places(path: str | None) -> list[str]:
    """Directories to try, in order: `path` alone when given."""
    if path:
        return [path]
    out = []
    with contextlib.suppress(OSError):  # the current directory was removed under us
        out.append(os.getcwd())
    out.append(tempfile.gettempdir())
    return out


def save(app: App[Any], filename: str | None = None, path: str | None = None) -> tuple[bool, str]:
    """(saved, what to tell): the first directory that takes the file, and why earlier ones did not."""
    problems = []
    for where in places(path):
        try:
            saved = app.save_screenshot(filename, where)
        except OSError as exc:
            problems.append(f"{where}: {exc.strerror or exc}")
            continue
        note = f" (not in {'; '.join(problems)})" if problems else ""
        return True, f"saved {saved}{note}"
    return False, "not saved: " + "; ".join(problems)
