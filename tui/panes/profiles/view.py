"""What the Profiles pane shows, as plain values (no widgets): which profile is shown or
which samples a followed trace_id picked, the tag sets with their share, canary vs
stable, what `c` captures for a row, the flame rows and top-function lines.

A sample is canary or stable by its `track` tag, else its `version` tag, valued exactly
"canary" / "stable": the convention the canary collector reads from Prometheus labels.
Every tag value and function name goes through `clean`.

Where a process runs (its identity tags: pod, ns, workload, unit, container, pod_uid,
netns) is read from its listed stacks, as its comm is: a row is one process (pid is a
group key), so regrouping the profile's groups by one of those tags (`regroup`) counts
every sample once and all of them, not only the listed stacks'.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual.content import Content

from ebpftop.collectors.flows.view import identity_value
from ebpftop.collectors.identity.model import Identity
from ebpftop.collectors.profiles.aggregate import (
    GROUP_KEYS,
    diff_top,
    flame_rows,
    flame_tree,
    group_by,
    project,
    select_for_trace,
    top_functions,
)
from ebpftop.collectors.profiles.model import Profile, ProfilesData, StackSample, TagGroup, Tags, tag

from ...text import clean
from .. import fmt
from ..fmt import Part

VARIANT_KEYS = ("track", "version")
VARIANTS = ("canary", "stable")
TABLE_KEYS = GROUP_KEYS  # service, env, version, trace_id, pid
# `g` cycles through these: "tags" (TABLE_KEYS) and those the profile's tags can fill.
GROUPINGS = ("tags", "pod", "namespace", "workload", "unit", "container", "netns")
# Per-sample tags: not part of who the process is.
NOT_IDENTITY = ("trace_id", "span_id", "source")
# The detail lists a process's tags in this order, then any others.
IDENTITY_ORDER = (
    "pid",
    "comm",
    "service",
    "version",
    "env",
    "track",
    "netns",
    "unit",
    "container",
    "pod_uid",
    "qos",
    "pod",
    "ns",
    "workload",
)


def fit(value: object, width: int) -> str:
    """Cleaned text cut to `width` characters (escapes count), with … when cut."""
    s = clean(value)
    if width <= 0:
        return ""
    return s if len(s) <= width else (s[: width - 1] + "…" if width > 1 else s[:width])


def variant(tags: Tags) -> str | None:
    for key in VARIANT_KEYS:
        value = tag(tags, key)
        if value in VARIANTS:
            return value
    return None


def all_profiles(data: ProfilesData | None) -> list[Profile]:
    if data is None:
        return []
    return list(data.windows) + list(data.captures)


@dataclass(frozen=True)
class TraceFilter:
    trace_id: str
    service: str
    at: float | None = None  # when the exemplar was recorded


@dataclass(frozen=True)
class View:
    title: str  # one line: what is shown
    groups: tuple[TagGroup, ...]
    stacks: tuple[StackSample, ...]
    total: int
    source: str = ""  # the profile's source ("bpf" or a pprof URL); "" for a trace selection
    omitted: int = 0  # samples the stack listing left out (groups still count them)
    filtered: bool = False
    matched: bool = False  # the trace_id itself was found
    by: str = "tags"  # the grouping (GROUPINGS): rows are tag sets, or one identity tag's values


def build_view(data: ProfilesData | None, chosen: str | None, trace: TraceFilter | None) -> View:
    """The samples to show: the trace selection when following one, else the chosen
    profile (by name; the first one when that name is gone)."""
    profiles = all_profiles(data)
    if trace is not None:
        sel = select_for_trace(profiles, trace.trace_id, trace.service or None, trace.at)
        stacks, how = list(sel.stacks), sel.how
        if not sel.matched_trace:
            # The link asked for the canary service: keep its canary samples when the
            # tags tell them apart.
            canary = [s for s in stacks if variant(s.tags) == "canary"]
            if canary:
                n = sum(s.count for s in canary)
                stacks, how = canary, how + f", its canary's {n}"
        total = sum(s.count for s in stacks)
        return View(
            how,
            tuple(group_by(stacks, TABLE_KEYS)),
            tuple(stacks),
            total,
            filtered=True,
            matched=sel.matched_trace,
        )
    prof = next((p for p in profiles if p.name == chosen), profiles[0] if profiles else None)
    if prof is None:
        return View("no profile yet", (), (), 0)
    span = fmt.duration(prof.end - prof.start)
    title = f"{clean(prof.name, 80)}: {prof.total_samples} samples over {span}"
    if chosen is not None and prof.name != chosen:
        title = f"{clean(chosen, 80)} is no longer kept; showing the first profile, {title}"
    groups = prof.groups if prof.groups else tuple(group_by(prof.stacks, TABLE_KEYS))
    return View(
        title,
        tuple(groups),
        prof.stacks,
        prof.total_samples,
        source=prof.source,
        omitted=prof.omitted_samples,
    )


def group_stacks(view: View, group: TagGroup) -> list[StackSample]:
    """The listed stacks of one row (its tag set, projected as the groups were; or,
    regrouped, its identity value)."""
    if view.by != "tags":
        return [s for s in view.stacks if group_value(s.tags, view.by) == tag(group.tags, view.by)]
    return [s for s in view.stacks if project(s.tags, TABLE_KEYS) == group.tags]


def row_tags(view: View) -> dict[Tags, Tags]:
    """The whole tags of the process behind each row (its first listed stack's)."""
    out: dict[Tags, Tags] = {}
    for s in view.stacks:
        out.setdefault(project(s.tags, TABLE_KEYS), s.tags)
    return out


def process_names(view: View) -> dict[Tags, str]:
    """The process name (comm) behind each row, from its listed stacks: a row without
    a service tag is otherwise a bare pid."""
    return {row: comm for row, tags in row_tags(view).items() if (comm := tag(tags, "comm"))}


def identity_of(tags: Tags) -> Identity:
    """A process's tags as an Identity (only what tags carry: no runtime, cgroup, qos)."""
    return Identity(
        0,
        pod=tag(tags, "pod"),
        namespace=tag(tags, "ns"),
        workload=tag(tags, "workload"),
        unit=tag(tags, "unit"),
        container=tag(tags, "container"),
        pod_uid=tag(tags, "pod_uid"),
        netns=tag(tags, "netns"),
    )


def where_names(view: View) -> dict[Tags, str]:
    """Where the process behind each row runs (Identity.where: pod, container, unit or
    netns), for the rows whose tags say."""
    return {row: w for row, tags in row_tags(view).items() if (w := identity_of(tags).where())}


def group_value(tags: Tags, by: str) -> str:
    """A process's value for an identity grouping; a sample of no known process (pprof
    from a URL) has none, not the host's netns."""
    value = identity_value(identity_of(tags), by) if tag(tags, "pid") is not None else None
    return value if value is not None else f"(no {by})"


def offered_groupings(view: View) -> tuple[str, ...]:
    """ "tags" and the identity groupings some listed stack has a value for."""
    seen = {identity_of(t) for t in row_tags(view).values()}
    keep = [by for by in GROUPINGS[1:] if any(identity_value(w, by) not in (None, "(host)") for w in seen)]
    return ("tags", *keep)


UNLISTED = "(stacks not listed)"


def regroup(view: View, by: str) -> View:
    """The view's rows regrouped by one identity value. Each row is one process, its
    identity read from its listed stacks (a row with none listed: UNLISTED)."""
    if by == "tags":
        return view
    rows = row_tags(view)
    sums: dict[str, int] = {}
    for g in view.groups:
        whole = rows.get(g.tags)
        key = group_value(whole, by) if whole is not None else UNLISTED
        sums[key] = sums.get(key, 0) + g.samples
    total = sum(sums.values())
    groups = tuple(
        TagGroup(((by, k),), n, n / total if total else 0.0)
        for k, n in sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return replace(view, groups=groups, by=by)


def identity_lines(stacks: list[StackSample], n: int = 6) -> Content:
    """Each process among `stacks` once, with every tag it carries (its whole identity
    as the profile knows it), in IDENTITY_ORDER."""
    seen: dict[Tags, None] = {}
    for s in stacks:
        seen.setdefault(tuple((k, v) for k, v in s.tags if k not in NOT_IDENTITY), None)
    if not seen:
        return Content.assemble(("—", "$text-muted"))
    rank = {k: i for i, k in enumerate(IDENTITY_ORDER)}
    parts: list[Part] = []
    for tags in list(seen)[:n]:
        if parts:
            parts.append("\n")
        for i, (k, v) in enumerate(sorted(tags, key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))):
            parts += [(f"{'  ' if i else ''}{clean(k, 40)} ", "$text-muted"), clean(v, 120)]
    if len(seen) > n:
        parts.append((f"\n… and {len(seen) - n} more", "$text-muted"))
    return Content.assemble(*parts)


def table_columns(groups: tuple[TagGroup, ...]) -> list[str]:
    """The tag keys some group has (a column nobody fills only takes room)."""
    present = {k for g in groups for k, _ in g.tags}
    return [k for k in TABLE_KEYS if k in present]


def full_widths(columns: list[str], values: list[list[str]]) -> list[int]:
    """Each column as wide as its label and its longest value."""
    return [max([len(c)] + [len(row[i]) for row in values]) for i, c in enumerate(columns)]


def fits(columns: list[str], values: list[list[str]], room: int) -> bool:
    """Every column at its full width, with a gap before each, within `room`."""
    return sum(full_widths(columns, values)) + len(columns) <= room


def fit_widths(columns: list[str], values: list[list[str]], room: int, least: int = 6) -> list[int]:
    """Widths for the tag columns within `room` (the gap before each included): each as
    wide as its longest value, the widest cut first when they do not all fit."""
    widths = full_widths(columns, values)
    room -= len(columns)  # one column of gap before each
    while sum(widths) > room and max(widths, default=0) > least:
        i = widths.index(max(widths))
        widths[i] -= max(1, min(widths[i] - least, sum(widths) - room))
    return widths


def share_text(share: float) -> str:
    return f"{share * 100:.1f}%"


def capture_target(view: View, group: TagGroup | None) -> dict[str, str]:
    """What `c` captures for the selected row: {"url": ...} for pprof samples, else
    {"pid": ...} (the process), else {"service": ...}; {} when nothing names it."""
    if group is None:
        return {}
    sources = {tag(s.tags, "source") for s in group_stacks(view, group)} - {None, "bpf"}
    source = (
        view.source if view.source and view.source != "bpf" else (sources.pop() if len(sources) == 1 else "")
    )
    if source:
        return {"url": source}
    for key in ("pid", "service"):
        value = tag(group.tags, key)
        if value:
            return {key: value}
    return {}


# --- canary vs stable -----------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    service: str | None
    lines: Content


def compare(view: View, preferred: str | None, width: int, n: int = 5) -> Comparison:
    """Top functions of canary vs stable for one service: `preferred` (the selected
    row's) when it has both variants, else the busiest service that has (and the line
    says the selected one could not be compared)."""
    by_service: dict[str, dict[str, list[StackSample]]] = {}
    for s in view.stacks:
        v = variant(s.tags)
        if v is None:
            continue
        by_service.setdefault(tag(s.tags, "service") or "", {}).setdefault(v, []).append(s)
    both = [svc for svc, parts in by_service.items() if len(parts) == 2]
    head = ("canary vs stable  ", "bold")
    if not both:
        why = (
            "no service has both canary and stable samples here (tag track or version = canary/stable)"
            if by_service
            else "no sample is tagged canary or stable (track or version tag)"
        )
        return Comparison(None, Content.assemble(head, (why, "$text-muted")))
    weight = {svc: sum(s.count for p in by_service[svc].values() for s in p) for svc in both}
    svc = preferred if preferred in both else max(both, key=lambda k: (weight[k], k))
    canary, stable = by_service[svc]["canary"], by_service[svc]["stable"]
    cn, sn = sum(s.count for s in canary), sum(s.count for s in stable)
    parts: list[Part | Content] = [
        head,
        f"service={fit(svc, 30)}",
        (f"  self samples: canary {cn}, stable {sn}", "$text-muted"),
    ]
    if preferred and preferred != svc:
        # The selected row's service cannot be compared: say which one is instead.
        note = f"  (selected service={fit(preferred, 20)} lacks canary or stable samples)"
        parts.append((note, "$warning"))
    name_w = max(10, width - 32)
    for d in diff_top(canary, stable, n):
        style = "$error" if d.delta > 0.05 else "$success" if d.delta < -0.05 else ""
        parts += [
            "\n",
            (f"{d.delta * 100:+6.1f}% ", style or "bold"),
            f"{d.canary_share * 100:5.1f}% {d.stable_share * 100:5.1f}%  ",
            fit(d.name, name_w),
        ]
    return Comparison(svc, Content.assemble(*parts))


# --- the detail: top functions and the flame view --------------------------------------


def top_lines(stacks: list[StackSample], width: int, n: int = 8) -> Content:
    total = sum(s.count for s in stacks)

    def pct(x: int) -> str:
        return f"{x / total * 100:5.1f}%" if total else fmt.NO_DATA

    name_w = max(10, width - 30)
    parts: list[Part] = []
    for by in ("self", "total"):
        if parts:
            parts.append("\n\n")
        parts += [
            (f"top functions by {by}", "bold"),
            "\n",
            (f"{'self':>7} {'self%':>6} {'total':>7} {'total%':>6}  function", "$text-muted"),
        ]
        for f in top_functions(stacks, n, by=by):
            parts += [
                "\n",
                f"{f.self_samples:>7} {pct(f.self_samples):>6} {f.total_samples:>7} "
                f"{pct(f.total_samples):>6}  ",
                fit(f.name, name_w),
            ]
    if not parts or total == 0:
        return Content("no samples")
    return Content.assemble(*parts)


FLAME_STYLES = ("reverse $accent", "reverse $secondary", "reverse $primary")


def flame_lines(stacks: list[StackSample], width: int, height: int) -> Content:
    """Root row first; each cell's width is its share; one blank column between cells
    so they stay apart without colour."""
    rows = flame_rows(flame_tree(stacks), max(1, width), max(1, height))
    parts: list[Part] = []
    for depth, row in enumerate(rows):
        if depth:
            parts.append("\n")
        col = 0
        for i, cell in enumerate(row):
            if cell.col > col:
                parts.append(" " * (cell.col - col))
            label = fit(cell.name, cell.width - 1) if cell.width > 1 else ""
            style = FLAME_STYLES[(i + depth) % len(FLAME_STYLES)]
            parts.append((label.ljust(cell.width - 1), style) if cell.width > 1 else ("▏", "$text-muted"))
            if cell.width > 1:
                parts.append(" ")
            col = cell.col + cell.width
    return Content.assemble(*parts) if parts else Content("no samples")
