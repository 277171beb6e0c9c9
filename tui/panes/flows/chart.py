"""The rate chart of the flow detail (plotext through textual-plotext), in its own module
so plotting is imported when a detail opens, not before the dashboard's first frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from .detail import Point


class RateChart(PlotextPlot):
    DEFAULT_CSS = """
    RateChart { height: 12; min-height: 8; width: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__(id="flow-chart")
        self.points_drawn = 0  # for tests: points the last draw plotted

    def draw(self, points: Sequence[Point]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        end = points[-1].t if points else 0.0
        known = [(p.t - end, p.bps) for p in points if p.bps is not None]
        peak = max((v for _t, v in known), default=0.0)
        unit, div = "B/s", 1.0
        for name, size in (("GiB/s", 1 << 30), ("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
            if peak >= size:
                unit, div = name, float(size)
                break
        if known:
            plt.plot([t for t, _ in known], [v / div for _, v in known], marker="braille", color="cyan")
        plt.title(f"rate ({unit})" if known else "rate: no samples with a known rate yet")
        plt.xlabel("seconds before latest")
        self.points_drawn = len(known)
        self.refresh()
