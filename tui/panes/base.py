"""The common frame of a source pane (`SourcePane`) and what it is handed (`PaneFeed`).

The base class owns what every source shares, so each degrades the same way: the health
line (badge, message, hint, age), why there is no data and what to do, and the last
good data dimmed (`-stale`) after a failure. Panes draw only what `show(feed)` hands
them and never read the store, the app's controllers, bcc, sockets or files; payload
text goes through `tui.text`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from ebpftop.core.alarms import Alarm
from ebpftop.core.model import NO_DATA_YET, Health, HealthState, Snapshot

from ..text import clean, joined, plain
from . import fmt
from .paint import set_content

BADGES: dict[HealthState, tuple[str, str]] = {
    # state: (label, style). The label carries the meaning, so NO_COLOR loses nothing.
    HealthState.OK: ("● OK", "bold $success"),
    HealthState.DEGRADED: ("▲ DEGRADED", "bold $warning"),
    HealthState.DOWN: ("✖ DOWN", "bold $error"),
    HealthState.OFF: ("○ OFF", "bold $text-muted"),
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaneFeed:
    """Everything a pane draws, built by the app's flush from the store (data flows one
    way: a pane never reads the store or the app's controllers)."""

    snapshot: Snapshot | None = None  # the latest; None while nothing has arrived
    last_good: Snapshot | None = None  # the newest that carried data (core.store.last_good)
    now: float = 0.0
    history: tuple[Snapshot, ...] = ()  # this source's, oldest first
    alarms: tuple[Alarm, ...] = ()  # this source's data alarms (core/alarms.py)
    related: Mapping[str, tuple[Snapshot, ...]] = field(default_factory=dict)  # RELATED histories
    auto_rollback: str = ""  # the canary's auto-rollback state line
    rollback_key: bool = False  # R would roll back (a controller, not read-only)


def badge(state: HealthState) -> tuple[str, str]:
    return BADGES[state]


def health_content(health: Health, now: float, *, waiting: bool = False) -> Content:
    """One line: badge, age of the last good data, message, hint."""
    label, style = badge(health.state)
    parts: list[str | tuple[str, str]] = []
    if waiting:
        parts.append(("… STARTING", "bold $text-muted"))
        parts.append("  waiting for the first sample")
        return Content.assemble(*parts)
    parts.append((label, style))
    age = health.age(now)
    if health.state is HealthState.OK:
        parts.append(("  updated " + fmt.duration(age) + " ago", "$text-muted"))
    elif age is not None:
        parts.append(("  last good " + fmt.age(age) + " ago", "$text-muted"))
    if health.message:
        parts.append("  ")
        parts.append(clean(health.message, 300))
    if health.hint:
        parts.append(("  → ", "$text-muted"))
        parts.append((clean(health.hint, 200), "italic"))
    return Content.assemble(*parts)


class PaneBody(Vertical):
    """A pane's body, which tells its pane when it is shown again after being folded."""

    def on_show(self) -> None:
        pane = self.parent
        if isinstance(pane, SourcePane):
            pane.body_shown()


class SourcePane(Vertical, can_focus=True):
    """A focusable pane showing one source. Subclasses set the class vars below and
    either override `render_body` (text in the default Static) or, for interactive
    bodies (a `LineTable`, a chart), `compose_body` + `update_body`."""

    source: ClassVar[str] = "?"
    title: ClassVar[str] = "?"
    number: ClassVar[int] = 0
    # What the pane shows once its source works; shown while it does not.
    ABOUT: ClassVar[str] = ""
    # Other sources whose history the pane gets in `feed.related` (kept current, no redraw)
    # and those of them whose change redraws it.
    RELATED: ClassVar[tuple[str, ...]] = ()
    REDRAWN_BY: ClassVar[tuple[str, ...]] = ()

    DEFAULT_CSS = """
    SourcePane { height: 1fr; }
    SourcePane > .health { height: auto; max-height: 3; }
    SourcePane > .body { height: 1fr; }
    SourcePane > .body > .message { display: none; height: auto; }
    SourcePane > .body > .data { height: 1fr; }
    SourcePane.-nodata > .body > * { display: none; }
    SourcePane.-nodata > .body > .message { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id or f"pane-{self.source}", classes="pane -nodata")
        self.feed = PaneFeed()
        self.snapshot: Snapshot | None = None
        self.last_good: Snapshot | None = None
        self._now = 0.0
        self.alarms: list[tuple[str, str]] = []  # (text, severity) of the feed's alarms
        self._body_behind = False  # data arrived while the body was folded

    def compose(self) -> ComposeResult:
        yield Static(Content(""), classes="health", markup=False)
        with PaneBody(classes="body"):
            # Why there is no data and what to do; hidden while there is data.
            yield Static(Content(""), classes="message", markup=False)
            yield from self.compose_body()

    def on_mount(self) -> None:
        self.border_title = plain(f"{self.number} {self.title}")
        self.set_class(True, "-waiting")

    # --- called by the app -------------------------------------------------------

    def show(self, feed: PaneFeed) -> None:
        """Redraw from the latest snapshot (and the latest one that carried data)."""
        self.feed = feed
        snapshot, now = feed.snapshot, feed.now
        self.snapshot = snapshot
        self._now = now
        self.last_good = feed.last_good
        for state in HealthState:
            self.set_class(snapshot is not None and snapshot.health.state is state, f"-{state.value}")
        self.set_class(snapshot is None, "-waiting")
        shown = snapshot if snapshot is not None and snapshot.data is not None else self.last_good
        self.set_class(shown is not None and shown is not snapshot, "-stale")
        self.update_health(now)
        self._show_alarms(feed.alarms)
        if not self.query_one(PaneBody).display:
            # Folded (a stacked pane at 80 columns): the body costs nothing until shown.
            self._body_behind = True
            return
        self._body_behind = False
        if shown is not None and self._update_body_safely(shown, now):
            return
        self.set_class(True, "-nodata")
        if shown is None:
            message = self.about() if snapshot is None else self.render_unavailable(snapshot.health)
            set_content(self.query_one(".message", Static), message)

    def body_shown(self) -> None:
        """The body is on screen again: draw what arrived while it was folded."""
        if self._body_behind:
            self.show(self.feed)

    def update_related(self, related: Mapping[str, tuple[Snapshot, ...]]) -> None:
        """Newer histories of the `RELATED` sources that do not redraw the pane."""
        self.feed = dataclasses.replace(self.feed, related=related)

    def _show_alarms(self, alarms: tuple[Alarm, ...]) -> None:
        self.alarms = [(a.text, a.severity) for a in alarms]
        # On the border too: at 80 columns an unfocused pane shows only its frame. Set
        # only when it changes: setting it repaints the whole pane, frame and body.
        subtitle = joined((a.text for a in alarms), max_len=60)
        shown = self._border_subtitle
        if shown is None or (shown.plain, shown.spans) != (subtitle.plain, subtitle.spans):
            self.border_subtitle = subtitle
        self.set_class(any(a.severity == "error" for a in alarms), "-alarm")

    def _update_body_safely(self, shown: Snapshot, now: float) -> bool:
        """True when the body shows the data; otherwise the message says why not."""
        try:
            self.update_body(shown.data, shown, now)
        except Exception as exc:
            log.warning("pane %s could not show its data", self.source, exc_info=True)
            self.set_class(True, "-nodata")
            set_content(
                self.query_one(".message", Static),
                Content.assemble(
                    ("Cannot display this data: ", "bold $error"),
                    clean(f"{type(exc).__name__}: {exc}", 300),
                ),
            )
            return False
        self.set_class(False, "-nodata")
        return True

    def update_health(self, now: float) -> None:
        """Redraw only the health line (the app calls this on its slow age timer)."""
        if self.snapshot is None:
            content = health_content(NO_DATA_YET, now, waiting=True)
        else:
            content = health_content(self.snapshot.health, now)
        # Most ticks change nothing ("updated 0s ago" again): set_content skips those.
        set_content(self.query_one(".health", Static), content)

    # --- for subclasses ----------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        """The widgets that show data (give them class "data"). Default: one Static."""
        yield Static(Content(""), classes="data", markup=False)

    def update_body(self, data: Any, snapshot: Snapshot, now: float) -> None:
        """Show a payload. Default: `render_body` into the Static. Called only with
        data; `snapshot` is the one that carried it (older than the latest when -stale)."""
        set_content(self.query_one(".data", Static), self.render_body(data, snapshot, now))

    def on_resize(self) -> None:
        # The default body fits its table to the pane; redo it at the new size.
        if self.last_good is not None and type(self).update_body is SourcePane.update_body:
            self.call_after_refresh(self._rerender)

    def _rerender(self) -> None:
        if self.last_good is not None:
            self._update_body_safely(self.last_good, self._now)

    def about(self) -> Content:
        return Content.assemble((self.ABOUT, "$text-muted")) if self.ABOUT else Content("")

    def render_unavailable(self, health: Health) -> Content:
        """The body when there is nothing to show: what to do, and what it would show.
        (The health line above already says what is wrong.)"""
        parts: list[str | tuple[str, str]] = []
        if health.hint:
            parts += [("What to do: ", "bold"), (clean(health.hint, 200), "bold $accent")]
        elif health.state is not HealthState.OFF:
            parts += [("No data from this source.", "bold")]
        if self.ABOUT:
            parts += ["\n" if parts else "", (f"When it works, this pane shows: {self.ABOUT}", "$text-muted")]
        return Content.assemble(*parts)

    def render_body(self, data: Any, snapshot: Snapshot, now: float) -> Content:
        """Render the payload; a pane overrides this or `update_body`. A payload it
        cannot draw raises, and the body says so ("Cannot display this data")."""
        raise NotImplementedError(f"{type(self).__name__} draws no {self.source} payload")
