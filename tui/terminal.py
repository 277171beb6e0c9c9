"""The terminal driver: Textual's Linux driver writing to its own descriptor.

Textual writes the screen to fd 2. Code in the same process may point fd 2 elsewhere
for a while (the flows collector does, so that bcc/clang compile messages, which libbcc
prints on fd 2, do not scribble over the screen). Every frame drawn meanwhile would be
lost: the screen freezes and parts of it (the footer, say) never appear. Writing to a
duplicate of the terminal descriptor, taken before any collector starts, makes the
screen immune to whatever happens to fd 2 later.
"""

from __future__ import annotations

import os

from textual.drivers.linux_driver import LinuxDriver


class OwnFdDriver(LinuxDriver):
    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._own = None
        shared = self._file
        try:
            fd = os.dup(shared.fileno())
        except (OSError, ValueError, AttributeError):
            return  # no real descriptor (tests, odd embedding): keep Textual's choice
        self._own = open(fd, "w", encoding=shared.encoding or "utf-8", errors=shared.errors or "strict")
        self._file = self._own

    def close(self) -> None:
        super().close()
        if self._own is not None:
            try:
                self._own.close()
            except OSError:
                pass
            self._own = None
