"""Fan-out of snapshots from collectors (or a replay) to the store, recorder and UI."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .model import Snapshot

log = logging.getLogger(__name__)

Subscriber = Callable[[Snapshot], None]


class Bus:
    """Synchronous fan-out on the event loop.

    Subscribers must be cheap (the store appends, the recorder buffers, the UI posts a
    message); one that raises is logged and kept, so a bad consumer cannot starve the
    others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.published = 0
        self.subscriber_errors = 0

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def publish(self, snap: Snapshot) -> None:
        self.published += 1
        for fn in list(self._subscribers):
            try:
                fn(snap)
            except Exception:
                self.subscriber_errors += 1
                log.exception("bus subscriber %r failed on %s", fn, snap.source)
