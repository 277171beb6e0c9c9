"""Latest snapshot per source plus a bounded history, so memory never grows."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from .model import NO_DATA_YET, Health, Snapshot

DEFAULT_HISTORY = 300  # five minutes at one sample a second


def last_good(latest: Snapshot | None, history: Sequence[Snapshot]) -> Snapshot | None:
    """The newest snapshot that carried data: what a pane keeps showing, dimmed, once its
    source fails. None when the source never delivered (or the history has lost it)."""
    if latest is not None and latest.data is not None:
        return latest
    return next((snap for snap in reversed(history) if snap.data is not None), None)


class Store:
    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._history_len = history
        self._latest: dict[str, Snapshot] = {}
        self._history: dict[str, deque[Snapshot]] = {}

    def put(self, snap: Snapshot) -> None:
        self._latest[snap.source] = snap
        hist = self._history.get(snap.source)
        if hist is None:
            hist = self._history[snap.source] = deque(maxlen=self._history_len)
        hist.append(snap)

    __call__ = put  # so a Store subscribes to a Bus directly

    def latest(self, source: str) -> Snapshot | None:
        return self._latest.get(source)

    def history(self, source: str) -> tuple[Snapshot, ...]:
        return tuple(self._history.get(source, ()))

    def last_good(self, source: str) -> Snapshot | None:
        return last_good(self.latest(source), self.history(source))

    def health(self, source: str) -> Health:
        snap = self._latest.get(source)
        return NO_DATA_YET if snap is None else snap.health

    def sources(self) -> Iterable[str]:
        return tuple(self._latest)

    def clear(self) -> None:
        self._latest.clear()
        self._history.clear()

    def __len__(self) -> int:
        return sum(len(h) for h in self._history.values())
