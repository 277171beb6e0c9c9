"""Canary pane: canary vs stable per service, the verdict and its evidence, the rollout,
the slow requests' trace ids (the way into Profiles) and charts of p99 and error ratio.

Everything scrolls inside the pane so 80x24 cuts nothing: text first, `z` zooms, `x`
jumps to the trace ids. Its feed carries the "rollout" history and the auto-rollback
line beside its own source.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ebpftop.core.model import Snapshot

from ...text import clean
from ..base import PaneFeed, SourcePane
from ..paint import set_content
from .render import seconds, series, summary

if TYPE_CHECKING:
    from .charts import MetricChart

ROLLOUT_SOURCE = "rollout"
KEYS = "x: slow trace ids (enter follows one)  z: zoom  s: chart next service"


class TraceSelected(Message):
    """The operator picked a slow request's trace id (for the profiles pane to follow)."""

    def __init__(self, trace_id: str, service: str, at: float | None = None) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.service = service
        self.at = at  # when the exemplar was recorded


class CanaryPane(SourcePane):
    source = "canary"
    title = "Canary"
    number = 3
    ABOUT = "p99 latency, error rate and throughput per variant, verdict, rollout weight and phase."
    RELATED = (ROLLOUT_SOURCE,)
    REDRAWN_BY = (ROLLOUT_SOURCE,)

    BINDINGS: ClassVar[list[BindingType]] = [
        # Not in the footer (80 columns must keep the app's keys); the pane names them.
        Binding("x", "exemplars", "Traces", show=False, tooltip="jump to the slow requests' trace ids"),
        Binding("s", "next_service", "Chart svc", show=False, tooltip="chart the next service"),
        Binding(
            "z", "maximize", "Zoom", show=False, tooltip="give this pane the whole screen (again to restore)"
        ),
        Binding("up", "scroll(-1)", show=False),
        Binding("down", "scroll(1)", show=False),
        Binding("pageup", "scroll(-8)", show=False),
        Binding("pagedown", "scroll(8)", show=False),
    ]

    DEFAULT_CSS = """
    CanaryPane > .body > VerticalScroll.data { height: 1fr; scrollbar-size-vertical: 1; }
    CanaryPane #canary-keys { height: 1; color: $text-muted; }
    CanaryPane #canary-summary { height: auto; }
    CanaryPane #canary-exemplars { height: auto; max-height: 8; border: none; padding: 0; }
    CanaryPane #canary-exemplars.-empty { display: none; }
    CanaryPane #canary-trace-note { height: auto; color: $warning; }
    CanaryPane #canary-trace-note.-empty { display: none; }
    CanaryPane .chart { height: 12; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.selected_trace: tuple[str, str] | None = None  # (trace_id, service)
        self.chart_service: str | None = None
        self._exemplars: list[tuple[str, str]] = []  # (trace_id, service) in list order
        self._exemplar_times: dict[tuple[str, str], float] = {}
        self._services: list[str] = []
        self._charts_asked = False

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="data", can_focus=False):
            yield Static(Content(""), id="canary-summary", markup=False)
            yield Static(KEYS, id="canary-keys", markup=False)
            yield OptionList(id="canary-exemplars", classes="-empty", markup=False)  # options are Content
            yield Static(Content(""), id="canary-trace-note", classes="-empty", markup=False)
            # The charts come with the first data (_charts): plotting is not imported
            # before the dashboard's first frame (show: in a thread, while starting).

    def _load_charts(self) -> None:
        self.run_worker(_import_charts, thread=True, name="canary charts import", exit_on_error=False)

    def _charts(self) -> tuple[MetricChart, MetricChart]:
        from . import charts

        found = list(self.query(charts.MetricChart))
        if not found:
            found = [
                charts.MetricChart(
                    "p99", lambda p: p.canary_p99, lambda p: p.stable_p99, 1000.0, "ms", id="chart-p99"
                ),
                charts.MetricChart(
                    "5xx ratio", lambda p: p.canary_err, lambda p: p.stable_err, 100.0, "%", id="chart-errors"
                ),
            ]
            self.query_one(VerticalScroll).mount(*found)
        return found[0], found[1]

    # --- drawing -------------------------------------------------------------------

    def _rollout(self) -> Any:
        rollout = self.feed.related.get(ROLLOUT_SOURCE, ())
        return rollout[-1].data if rollout else None

    def show(self, feed: PaneFeed) -> None:
        super().show(feed)
        snapshot = feed.snapshot
        if snapshot is None and not self._charts_asked:
            # The source is starting: plotting's imports (~0.15 s) run in a thread while
            # it waits for Prometheus, after the first frame, so the frame that shows the
            # first verdict does not wait for them.
            self._charts_asked = True
            self.call_after_refresh(self._load_charts)
        nothing = (snapshot is None or snapshot.data is None) and self.last_good is None
        if nothing and self.has_class("-nodata") and self._rollout() is not None:
            # No canary evaluation (its health line says why), but the rollout is known:
            # weights, phase and the rollback key are worth the room.
            self.set_class(False, "-nodata")
            self.update_body(None, snapshot, feed.now)

    def update_body(self, data: Any, snapshot: Snapshot | None, now: float) -> None:
        history = self.feed.history
        width = max(20, self.query_one("#canary-summary", Static).content_size.width or self.size.width - 4)
        feed = self.feed
        set_content(
            self.query_one("#canary-summary", Static),
            summary(
                data, self._rollout(), history, now, width, feed.auto_rollback, rollback_key=feed.rollback_key
            ),
        )
        services = list(getattr(data, "services", ()) or ())
        self._services = [s.name for s in services]
        self._show_exemplars(services)
        self._draw_charts(services, history)

    def _show_exemplars(self, services: list[Any]) -> None:
        wanted = [(e.trace_id, s.name) for s in services for e in s.exemplars]
        if wanted == self._exemplars:
            return
        rows = []
        for s in services:
            for e in s.exemplars:
                self._exemplar_times[(e.trace_id, s.name)] = e.time
                rows.append(
                    Content.assemble(
                        ("trace ", "$text-muted"),
                        (clean(e.trace_id, 64), "bold"),
                        f"  {seconds(e.value_s)}",
                        (f"  {clean(s.name, 30)}", "$text-muted"),
                        (f"  le={clean(e.bucket, 12)}" if e.bucket else "", "$text-muted"),
                    )
                )
        olist = self.query_one("#canary-exemplars", OptionList)
        # The highlight stays on its trace id across refreshes (the list is rebuilt):
        # Enter follows what the operator is looking at.
        at = olist.highlighted
        keep = self._exemplars[at] if at is not None and 0 <= at < len(self._exemplars) else None
        olist.clear_options()
        olist.add_options([Option(r) for r in rows])
        olist.set_class(not rows, "-empty")
        self._exemplars = wanted
        self._exemplar_times = {k: t for k, t in self._exemplar_times.items() if k in wanted}
        note = ""
        if keep in wanted:
            olist.highlighted = wanted.index(keep)
        elif keep is not None and at is not None:
            window = next((s.window for s in services if s.name == keep[1]), "")
            why = f" (no longer among the slowest requests of the last {clean(window, 12)})" if window else ""
            note = f"trace {clean(keep[0], 64)} left the list{why}"
            if rows:
                olist.highlighted = min(at, len(rows) - 1)
                note += "; the highlight moved to the row in its place"
            else:
                note += "; no slow trace ids now"
        if note:  # stays until the operator picks again (x or Enter)
            self._trace_note(note)

    def _trace_note(self, text: str) -> None:
        widget = self.query_one("#canary-trace-note", Static)
        set_content(widget, Content(text))
        widget.set_class(not text, "-empty")

    def _draw_charts(self, services: list[Any], history: Any) -> None:
        names = [s.name for s in services]
        if self.chart_service not in names:
            self.chart_service = names[0] if names else None
        svc = next((s for s in services if s.name == self.chart_service), None)
        points = series(history, svc.name) if svc is not None else []
        limits = {m.name: m.threshold for m in svc.metrics} if svc is not None else {}
        name = self.chart_service or ""
        p99, errors = self._charts()
        p99.draw(name, points, limits.get("p99"))
        errors.draw(name, points, limits.get("error_ratio"))

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)

    def redraw(self, *, auto_rollback: str | None = None, rollback_key: bool | None = None) -> None:
        """Redraw from the data shown (the size, rollout state or countdown changed; the
        app hands over a new auto-rollback line and key state)."""
        if auto_rollback is not None or rollback_key is not None:
            self.feed = replace(
                self.feed,
                auto_rollback=self.feed.auto_rollback if auto_rollback is None else auto_rollback,
                rollback_key=self.feed.rollback_key if rollback_key is None else rollback_key,
            )
        if self.last_good is not None:
            self._rerender()
        elif self.snapshot is not None or self._rollout() is not None:
            self.show(self.feed)

    # --- keys ------------------------------------------------------------------------

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self._exemplars):
            trace_id, service = self._exemplars[event.option_index]
            self.selected_trace = (trace_id, service)
            self._trace_note("")
            self.post_message(TraceSelected(trace_id, service, self._exemplar_times.get((trace_id, service))))
            self.app.notify(f"trace {clean(trace_id, 64)} of {clean(service, 40)} selected", timeout=4)

    def action_exemplars(self) -> None:
        olist = self.query_one("#canary-exemplars", OptionList)
        if not self._exemplars:
            self.app.notify(self._no_exemplars(), timeout=5)
            return
        olist.focus()
        olist.scroll_visible()
        if olist.highlighted is None:
            olist.highlighted = 0
        self._trace_note("")

    def _no_exemplars(self) -> str:
        """Why `x` has nothing to list."""
        data = self.last_good.data if self.last_good is not None else None
        services = list(getattr(data, "services", ()) or ())
        if not services:
            return "no slow trace ids: no canary evaluation yet (the pane's health line says why)"
        windows = ", ".join(f"{clean(s.name, 30)} in the last {clean(s.window, 12)}" for s in services)
        return (
            "no slow trace ids: Prometheus returned no exemplar with a trace id at or above the "
            f"canary's p99 bucket ({windows}); that needs Prometheus's exemplar storage and a histogram "
            "observed with trace_id exemplars"
        )

    def action_next_service(self) -> None:
        if self._services:
            i = self._services.index(self.chart_service) if self.chart_service in self._services else -1
            self.chart_service = self._services[(i + 1) % len(self._services)]
            self._rerender()

    def action_maximize(self) -> None:
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
        else:
            screen.maximize(self, container=False)
        self.call_after_refresh(self.redraw)

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)


def _import_charts() -> None:
    from . import charts  # noqa: F401  # loaded for _charts, which imports it again
