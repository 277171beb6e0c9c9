"""The one place that wires a dashboard: which sources run (collectors.registry), the
action gate with its audit log (core.runtime.audited_gate), and the actions that run as
the dashboard ends. The verbs and the tests build their runtimes here."""

from __future__ import annotations

from ebpftop.core.collector import Collector
from ebpftop.core.runtime import Runtime, audited_gate
from ebpftop.core.settings import Settings


def dashboard_runtime(settings: Settings, collectors: list[Collector] | None = None) -> Runtime:
    """A Runtime for the dashboard: the default sources unless `collectors` are given."""
    from ebpftop.actions.rules import end_session
    from ebpftop.collectors.registry import default_collectors

    chosen = default_collectors(settings) if collectors is None else collectors
    runtime = Runtime(settings, chosen, gate=audited_gate(settings))
    if any(c.name == "rules" for c in chosen):
        # Count rules added live end with their session (the Rules pane said so when
        # they were added), through the runtime's gate like every other change.
        runtime.on_close(lambda: end_session(settings, runtime.gate))
    return runtime


def viewer_runtime(settings: Settings, address: str, token: str | None = None) -> Runtime:
    """A Runtime for a dashboard that views an agent (`--connect`, or the local agent):
    the agent's stream instead of collectors; actions through this process's own gate,
    and the count rules this session added removed at its end, as a dashboard does."""
    from ebpftop.actions.rules import end_session
    from ebpftop.collectors.registry import load_payload_types
    from ebpftop.core.stream_client import ViewerRuntime

    load_payload_types()  # no collector runs here: their payload types decode the stream
    runtime = ViewerRuntime(settings, address, token=token)
    runtime.on_close(lambda: end_session(settings, runtime.gate))
    return runtime


def fleet_runtime(settings: Settings) -> Runtime:
    """A Runtime for the fleet view: the fleet's Prometheus, the header's host (the machine
    the view runs on) and ebpftop's own cost; no BPF, no action (nothing to undo at its end)."""
    from ebpftop.collectors.fleet.collector import FleetCollector
    from ebpftop.collectors.host import HostCollector
    from ebpftop.collectors.selfcost.collector import SelfCostCollector

    collectors = [
        HostCollector(interval=settings.refresh),
        FleetCollector(settings),
        SelfCostCollector(settings),
    ]
    return Runtime(settings, collectors, gate=audited_gate(settings))
