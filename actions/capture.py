"""`c` in the Profiles pane: capture a CPU profile now, through the action gate.

The confirmation says exactly what will be captured (the pid, the service or the pprof
URL), how, and for how long; the gate refuses in read-only mode and audits the intent
and the result. The capture itself is `ProfilesCollector.capture` (the pane never
samples or fetches anything itself); its result shows up in the pane's profiles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ebpftop.core.gate import Action
from ebpftop.core.untrusted import clean

COLLECTOR = "profiles"
DEFAULT_SECONDS = 10.0


def find_collector(runtime: Any) -> Any | None:
    """The live profiles collector, or None (a replay, a build without it)."""
    for c in getattr(runtime, "collectors", None) or ():
        if getattr(c, "name", "") == COLLECTOR and callable(getattr(c, "capture", None)):
            return c
    return None


def describe_target(target: dict[str, str]) -> str:
    if "url" in target:
        return f"pprof {clean(target['url'], 200)}"
    return " ".join(f"{k}={clean(v, 80)}" for k, v in sorted(target.items()))


def capture_action(
    collector: Any, target: dict[str, str], context: str = "", notify: Callable[[str], None] | None = None
) -> tuple[Action, Callable[[], Awaitable[str]]]:
    """The Action to confirm and the perform coroutine for one capture.

    `target` is {"url": ...}, {"pid": ...} or {"service": ...} (see
    tui/panes/profiles/view.py capture_target); `context` names the row (service, version) for
    the operator. `notify` is told when the capture starts (it takes seconds).
    """
    if not target:
        raise ValueError("nothing to capture: no pid, service or pprof URL")
    seconds = float(getattr(collector, "pprof_seconds", DEFAULT_SECONDS) or DEFAULT_SECONDS)
    hz = getattr(collector, "hz", None)
    where = f" ({clean(context, 120)})" if context else ""
    if "url" in target:
        what = (
            f"Fetch a {seconds:g} s CPU profile from the pprof endpoint {clean(target['url'], 200)} now"
            f"{where}: one HTTP GET that answers after {seconds:g} s."
        )
    elif "pid" in target:
        what = (
            f"Record the CPU stacks of process pid {clean(target['pid'], 20)}{where} for {seconds:g} s"
            f" with the running BPF sampler{f' ({hz} Hz)' if hz else ''}."
        )
    else:
        what = (
            f"Record the CPU stacks of every process tagged service={clean(target['service'], 80)}{where}"
            f" for {seconds:g} s with the running BPF sampler{f' ({hz} Hz)' if hz else ''}."
        )
    action = Action(
        kind="profiles.capture",
        title="Capture a CPU profile now",
        description=what + " The profile is kept in ebpftop's memory and shown in the Profiles pane; "
        "nothing outside ebpftop changes.",
        target=describe_target(target),
        params={**target, "seconds": seconds},
    )
    label = describe_target(target)

    async def perform() -> str:
        if notify is not None:
            notify(f"capturing {label} for {seconds:g} s…")
        prof = await collector.capture(**target)
        return f"captured {prof.total_samples} samples for {label} ({clean(prof.name, 120)}; v shows it)"

    return action, perform
