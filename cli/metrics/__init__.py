"""The agent's Prometheus endpoint: `/metrics` read from the runtime's store at scrape
time, and `/debug/pprof/profile` (the latest tagged CPU window as pprof), on one
listener. `bounds.py` holds every cardinality bound; docs/ARCHITECTURE.md "Metrics and
pprof for the fleet" lists the names and labels.
"""

from __future__ import annotations

from .exporter import Exporter
from .server import MetricsServer, start_metrics_server

__all__ = ["Exporter", "MetricsServer", "start_metrics_server"]
