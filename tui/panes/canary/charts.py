"""The Canary pane's charts: one metric over the last minutes, canary and stable on one
plot with the threshold drawn as a line (plotext through textual-plotext).

Points without data are left out of a line rather than drawn as 0; a chart with no
point at all says so in its title.
"""

from __future__ import annotations

from collections.abc import Callable

from textual_plotext import PlotextPlot

from ...text import clean
from .render import Point


class MetricChart(PlotextPlot):
    """p99 or error ratio of one service; x is minutes before the newest evaluation."""

    DEFAULT_CSS = """
    MetricChart { height: 12; min-height: 8; width: 1fr; }
    """

    def __init__(
        self,
        title: str,
        canary: Callable[[Point], float | None],
        stable: Callable[[Point], float | None],
        scale: float,
        unit: str,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, classes="chart")
        self.metric_title = title
        self._canary, self._stable = canary, stable
        self._scale, self._unit = scale, unit
        self.points_drawn = 0  # for tests: how many points the last draw plotted

    def draw(self, service: str, points: list[Point], threshold: float | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        drawn = 0
        end = points[-1].t if points else 0.0
        for name, get, color in (("canary", self._canary, "red"), ("stable", self._stable, "blue")):
            xs, ys = [], []
            for p in points:
                v = get(p)
                if v is not None:
                    xs.append((p.t - end) / 60.0)
                    ys.append(v * self._scale)
            if xs:
                plt.plot(xs, ys, label=name, color=color, marker="braille")
                drawn += len(xs)
        if threshold is not None:
            plt.hline(threshold * self._scale, "orange")
        what = f"{self.metric_title} ({self._unit}) — {clean(service, 30)}"
        if threshold is not None:
            what += f", limit {threshold * self._scale:.4g}"
        plt.title(what if drawn else f"{what}: no data yet")
        plt.xlabel("minutes before latest")
        self.points_drawn = drawn
        self.refresh()
