"""Profiles pane: CPU samples by tag set, the selection's top functions and flame view
(Enter), canary vs stable, `v` the next profile, `c` capture now (an action request),
`g` group by where the processes run (pod, namespace, workload, unit, container, netns:
only those the samples' tags fill). A `where` column names a row's pod, container, unit
or netns when every column fits at its full width beside it (else it is left out; the
detail lists each process's whole identity).

`follow_trace` (an exemplar trace_id chosen in the Canary pane) shows the samples that
carry it, or the canary service's when none does, saying why (the title, and a toast;
another when the samples arrive with a later profile); Escape returns to the profile.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from ebpftop.actions.capture import capture_action, describe_target
from ebpftop.collectors.profiles.model import TagGroup, Tags, tag
from ebpftop.core.model import Snapshot

from ...action_path import ActionRequest, Dialogs, Run, dashboard, through_gate
from ...text import clean
from .. import fmt
from ..base import SourcePane
from ..fmt import Part
from ..paint import set_content
from ..table import Column, LineTable, Row
from .detail import ProfileDetailScreen
from .view import (
    TraceFilter,
    View,
    all_profiles,
    build_view,
    capture_target,
    compare,
    fit,
    fit_widths,
    fits,
    group_stacks,
    identity_lines,
    offered_groupings,
    process_names,
    regroup,
    share_text,
    table_columns,
    where_names,
)

KEYS = "↑↓ row  enter: top functions + flame  v: next profile"
KEYS_GROUP = "↑↓ row  enter: functions + flame  v: next profile  g: group"  # when `g` has a choice
KEYS_CAPTURE = "  c: capture now"
KEYS_FILTERED = "  esc: back to the profile"


class ProfilesPane(SourcePane):
    source = "profiles"
    title = "Profiles"
    number = 4
    ABOUT = "CPU profile samples grouped by service, environment, trace_id and process, with top frames."

    BINDINGS: ClassVar[list[BindingType]] = [
        # Not in the footer (80 columns keep the app's keys); the pane's key line names them.
        Binding("enter", "detail", "Detail", show=False, tooltip="top functions and flame view of the row"),
        Binding(
            "c", "capture", "Capture", show=False, tooltip="capture a CPU profile now (confirmed, audited)"
        ),
        Binding("v", "next_profile", "Profile", show=False, tooltip="show the next profile"),
        Binding(
            "g",
            "cycle_group",
            "Group",
            show=False,
            tooltip="group by tags, pod, namespace, workload, unit, container, netns (those the tags have)",
        ),
        Binding("escape", "clear_filter", "Unfilter", show=False, tooltip="stop following the trace_id"),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
        Binding("pageup", "cursor(-8)", show=False),
        Binding("pagedown", "cursor(8)", show=False),
    ]

    DEFAULT_CSS = """
    ProfilesPane > .body > Vertical.data { height: 1fr; }
    ProfilesPane #profiles-title { height: auto; max-height: 3; }
    ProfilesPane #profiles-title.-filtered { color: $warning; }
    ProfilesPane #profiles-title.-matched { color: $success; }
    ProfilesPane #profiles-keys { height: 1; color: $text-muted; }
    ProfilesPane #profiles-table { height: 1fr; min-height: 3; }
    ProfilesPane #profiles-compare { height: auto; max-height: 7; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chosen: str | None = None  # profile name shown (None: the first)
        self.trace: TraceFilter | None = None
        self._trace_matched = False
        self.view: View | None = None
        self.grouping = "tags"  # view.GROUPINGS
        self.offered: tuple[str, ...] = ("tags",)  # the groupings the shown samples can fill
        self.rows: list[TagGroup] = []
        # The tags of the row the operator chose (None: nobody did, the top row).
        self._wanted: Tags | None = None
        self._data: Any = None
        # The live profiles collector `c` captures with, handed over by the app (None
        # in a replay or a build without it).
        self.capturer: Any = None

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="data"):
            yield Static(Content(""), id="profiles-title", markup=False)
            yield Static(Content(""), id="profiles-keys", markup=False)
            yield LineTable(id="profiles-table", stripes=True)
            yield Static(Content(""), id="profiles-compare", markup=False)

    # --- drawing -------------------------------------------------------------------

    def update_body(self, data: Any, snapshot: Snapshot, now: float) -> None:
        self._data = data
        view = build_view(data, self.chosen, self.trace)
        self.offered = offered_groupings(view)
        self.view = view = regroup(view, self.grouping if self.grouping in self.offered else "tags")
        if self.trace is not None and view.matched and not self._trace_matched:
            # The request was newer than the profiles when it was followed.
            self.app.notify(clean(view.title, 300), title="profiles", timeout=6)
        self._trace_matched = self.trace is not None and view.matched
        width = max(30, self.content_size.width or 80)
        self._draw_title(data, view, width)
        self._draw_keys()
        self._fill_table(view, width)
        group = self.selected_group()
        preferred = tag(group.tags, "service") if group is not None else None
        set_content(self.query_one("#profiles-compare", Static), compare(view, preferred, width).lines)

    def _draw_title(self, data: Any, view: View, width: int) -> None:
        parts: list[Part] = [(clean(view.title, 300), "bold")]
        if view.by != "tags":
            parts.append((f"  by {view.by}", "bold $accent"))
        if not view.filtered:
            names = [p.name for p in all_profiles(data)]
            if len(names) > 1:
                parts.append(
                    (
                        f"  ({names.index(self.chosen) + 1 if self.chosen in names else 1}/{len(names)})",
                        "$text-muted",
                    )
                )
            if view.omitted:
                parts.append((f"  {view.omitted} samples in stacks not listed", "$text-muted"))
        hz = getattr(data, "hz", None)
        if hz:
            parts.append((f"  BPF {hz} Hz", "$text-muted"))
        lost = getattr(data, "lost_samples", 0)
        if lost:
            parts.append((f"  lost samples: {lost}", "$warning"))
        for st in getattr(data, "sources", ()):
            if st.state == "error":
                parts += ["\n", (f"✖ {clean(st.name, 60)}: ", "bold $error"), clean(st.message, 200)]
            elif st.state == "off" and st.message:
                parts += ["\n", (f"○ {clean(st.name, 60)}: {clean(st.message, 160)}", "$text-muted")]
                if st.hint:
                    parts.append((f" → {clean(st.hint, 80)}", "italic $text-muted"))
        title = self.query_one("#profiles-title", Static)
        set_content(title, Content.assemble(*parts))
        title.set_class(view.filtered and not view.matched, "-filtered")
        title.set_class(view.filtered and view.matched, "-matched")

    def _draw_keys(self) -> None:
        keys = KEYS_GROUP if len(self.offered) > 1 else KEYS
        if not dashboard(self).read_only:
            keys += KEYS_CAPTURE
        if self.trace is not None:
            keys += KEYS_FILTERED
        set_content(self.query_one("#profiles-keys", Static), keys)

    def _fill_table(self, view: View, width: int) -> None:
        table = self.query_one("#profiles-table", LineTable)
        groups = list(view.groups)
        self.rows = groups
        wanted = self._wanted
        at = 0
        if wanted is not None:
            at = next((i for i, g in enumerate(groups) if g.tags == wanted), table.cursor)
        table.place(len(groups), at)
        # Columns fit what the window shows: the rows below it are never built.
        shown = tuple(groups[i] for i in table.visible_rows())
        named: dict[str, dict[Tags, str]] = {}
        if view.by != "tags":
            keys = [view.by]
        else:
            keys = table_columns(shown)
            for key, names in (("comm", process_names(view)), ("where", where_names(view))):
                if names:
                    keys.append(key)
                    named[key] = names

        def values(g: TagGroup) -> list[str]:
            return [
                clean(named[key].get(g.tags, fmt.NO_DATA) if key in named else tag(g.tags, key, fmt.NO_DATA))
                for key in keys
            ]

        if "where" in keys and not fits(keys, [values(g) for g in shown], width - 16):
            keys.remove("where")  # it would cut the columns there are without it
        samples = max((len(str(g.samples)) for g in shown), default=1)
        limits = fit_widths(keys, [values(g) for g in shown], width - 16)
        columns = [Column("share", "share", 6, True), Column("samples", "samples", max(7, samples), True)]
        columns += [Column(k, clean(k, 40), w) for k, w in zip(keys, limits, strict=True)]

        def row(i: int) -> Row:
            g = groups[i]
            cells = [(share_text(g.share), ""), (str(g.samples), "")]
            cells += [(fit(v, w), "") for v, w in zip(values(g), limits, strict=True)]
            return Row(g.tags, tuple(cells))

        table.show(columns, len(groups), row)

    def on_resize(self) -> None:
        self.call_after_refresh(self._rerender)

    # --- selection -----------------------------------------------------------------

    def selected_group(self) -> TagGroup | None:
        row = self.query_one("#profiles-table", LineTable).cursor
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def action_cursor(self, delta: int) -> None:
        if self.rows:
            self.query_one("#profiles-table", LineTable).move_cursor(
                self.query_one("#profiles-table", LineTable).cursor + delta
            )
            self._moved()

    def _moved(self) -> None:
        group = self.selected_group()
        self._wanted = group.tags if group is not None else None
        self._redraw_compare()

    def on_line_table_moved(self, event: LineTable.Moved) -> None:
        event.stop()
        self._moved()

    def on_line_table_resized(self, event: LineTable.Resized) -> None:
        event.stop()
        self._rerender()

    def on_line_table_selected(self, event: LineTable.Selected) -> None:
        event.stop()  # a click on the selected row, as Enter
        self.action_detail()

    def _redraw_compare(self) -> None:
        if self.view is None:
            return
        group = self.selected_group()
        preferred = tag(group.tags, "service") if group is not None else None
        width = max(30, self.content_size.width or 80)
        set_content(self.query_one("#profiles-compare", Static), compare(self.view, preferred, width).lines)

    def action_detail(self) -> None:
        group = self.selected_group()
        if group is None or self.view is None:
            self.app.notify("no row selected: no profile samples yet", timeout=3)
            return
        stacks = group_stacks(self.view, group)
        label = " ".join(f"{k}={v}" for k, v in group.tags) or "(no tags)"
        title = (
            f"{clean(label, 300)}: {group.samples} samples, "
            f"{share_text(group.share)} of {clean(self.view.title, 200)}"
        )
        listed = sum(s.count for s in stacks)
        note = ""
        if listed < group.samples:
            note = (
                f"{group.samples - listed} of its samples are in stacks "
                "the source did not list (the lightest)"
            )
        self.app.push_screen(ProfileDetailScreen(title, stacks, note, identity_lines(stacks)))

    def action_cycle_group(self) -> None:
        """`g`: the next grouping the samples' tags can fill."""
        at = self.offered.index(self.grouping) if self.grouping in self.offered else 0
        self.grouping = self.offered[(at + 1) % len(self.offered)]
        self._wanted = None  # the rows are other things now: start from the top
        if len(self.offered) == 1:
            self.app.notify(
                "no pod, namespace, workload, unit, container or netns tag in these samples to group by",
                timeout=3,
            )
        self._rerender()

    def action_next_profile(self) -> None:
        names = [p.name for p in all_profiles(self._data)]
        if not names:
            self.app.notify("no profile yet", timeout=3)
            return
        at = names.index(self.chosen) if self.chosen in names else 0
        self.chosen = names[(at + 1) % len(names)] if self.trace is None else names[at]
        self.trace = None
        self._rerender()
        self.app.notify(f"profile: {clean(self.chosen, 120)}", timeout=2)

    # --- the trace_id link ---------------------------------------------------------

    def follow_trace(self, trace_id: str, service: str, at: float | None = None) -> None:
        """Show the samples behind an exemplar's trace_id, recorded at `at` (or the canary
        service's, saying why)."""
        self.trace = TraceFilter(trace_id, service, at)
        self.focus()
        view = build_view(self._data, self.chosen, self.trace)
        self._trace_matched = view.matched
        if self.last_good is not None:
            self._rerender()
        self.app.notify(
            clean(view.title, 300),
            title="profiles",
            timeout=6,
            severity="information" if view.matched else "warning",
        )

    def action_clear_filter(self) -> None:
        if self.trace is not None:
            self.trace = None
            self._rerender()

    # --- capture -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # capture is hidden and inert read-only; the action path would refuse it too
        return not (action == "capture" and dashboard(self).read_only)

    def action_capture(self) -> None:
        """`c`, through the app's action path (refused read-only, confirmed, audited)."""
        group = self.selected_group()
        target = capture_target(self.view, group) if self.view is not None and group is not None else {}
        context = (
            " ".join(f"{k}={v}" for k, v in group.tags if k in ("service", "version", "env")) if group else ""
        )
        collector = self.capturer

        async def prepare(dialogs: Dialogs) -> Run | None:
            if not target:
                dialogs.say(
                    "nothing to capture: select a row with a pid, service or pprof source",
                    severity="warning",
                    timeout=None,
                )
                return None
            if collector is None:
                dialogs.say(
                    "capture unavailable: no live profiles collector (a replay cannot capture)",
                    severity="warning",
                    timeout=None,
                )
                return None
            return through_gate(
                *capture_action(collector, target, context, notify=lambda text: dialogs.say(text, timeout=4))
            )

        dashboard(self).act(ActionRequest("profiles.capture", "Capture a CPU profile", prepare))

    def capture_label(self) -> str:
        """What `c` would capture for the selected row (empty when nothing)."""
        group = self.selected_group()
        target = capture_target(self.view, group) if self.view is not None else {}
        return describe_target(target) if target else ""
