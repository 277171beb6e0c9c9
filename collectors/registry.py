"""Which sources exist: the live collectors for a set of settings, and the payload
types a replay needs. The cli chooses from here; core never names a source."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil

from ebpftop.core.collector import Collector
from ebpftop.core.settings import Settings

log = logging.getLogger(__name__)


def default_collectors(settings: Settings) -> list[Collector]:
    """The live sources for these settings. Later sources add themselves here."""
    from .canary.collector import CanaryCollector
    from .flows.collector import FlowsCollector
    from .host import HostCollector
    from .identity.shared_pods import shared_pods
    from .profiles.collector import from_settings as profiles_collector
    from .rules.collector import RulesCollector
    from .selfcost.collector import SelfCostCollector

    pods = shared_pods(settings)  # one pod list and watch for Flows and Profiles
    collectors = [
        HostCollector(interval=settings.refresh),
        FlowsCollector(settings.ifaces, interval=settings.refresh, pods=pods),
        # always present: without prometheus_url it reports "off" with how to turn it on
        CanaryCollector(settings),
        profiles_collector(settings, pods),  # BPF sampler off without root; pprof still works
        RulesCollector(settings),  # reads the pinned rule set; empty when none is enforced
        SelfCostCollector(settings),  # ebpftop's own cost; BPF stats only while asked for
    ]
    if settings.rollout_controller:
        from .rollout.collector import RolloutCollector

        collectors.append(RolloutCollector(settings))
    return collectors


def load_payload_types() -> None:
    """Import each source's `model` / `data` module, where its payload type registers
    (core.model.register_payload).

    A replay runs no collectors, so nothing else would import them, and snapshots of
    those sources would decode as plain dicts instead of the dataclasses panes expect.
    """
    # A viewer's own sources (the agent's health, the stream's drops) are core's: a
    # viewer's recording carries them too.
    importlib.import_module("ebpftop.core.stream")
    package = importlib.import_module(__package__ or "ebpftop.collectors")
    for info in pkgutil.iter_modules(package.__path__):
        if not info.ispkg:
            continue
        for leaf in ("model", "data"):
            name = f"{package.__name__}.{info.name}.{leaf}"
            try:
                if importlib.util.find_spec(name) is not None:
                    importlib.import_module(name)
            except Exception:
                log.exception("cannot load payload types from %s", name)
