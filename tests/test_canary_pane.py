"""The Canary pane (Pilot, no root): verdicts and numbers beside their thresholds at
80x24 and 160x48, "no data" (never 0) for NaN and missing numbers, stale badge,
Prometheus warnings, the drift test, charts from the store's history, exemplar trace
ids that can be selected, and the demo recording."""

from __future__ import annotations

import pathlib
from dataclasses import replace

import pytest
from app_support import NOW, make_app, ok, screen_text, settings, snap
from textual.widgets import OptionList, Static

from ebpftop.collectors.canary.data import Bucket, CanaryData, DriftTest, ServiceCanary, VariantMetrics
from ebpftop.collectors.canary.exemplars import Exemplar
from ebpftop.collectors.canary.verdict import MetricVerdict, Verdict
from ebpftop.collectors.rollout.model import RolloutData, RolloutState
from ebpftop.core.model import Snapshot, from_json, to_json
from ebpftop.core.replay import ReplayRuntime
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.panes.canary.charts import MetricChart
from ebpftop.tui.panes.canary.pane import CanaryPane, TraceSelected
from ebpftop.tui.panes.canary.render import sparkline, weight_bar

DATA = pathlib.Path(__file__).parent / "data"


def service(
    name: str = "checkout",
    *,
    c_p99=0.45,
    s_p99=0.2,
    c_err=0.02,
    s_err=0.001,
    c_rps=21.9,
    s_rps=188.0,
    verdict: str = "fail",
    at: float = NOW - 1,
    stale: bool = False,
    warnings=(),
    errors=(),
    exemplars=(),
) -> ServiceCanary:
    ratio = None if c_p99 is None or s_p99 is None else c_p99 / s_p99
    metrics = (
        MetricVerdict(
            "p99",
            Verdict.PASS if c_p99 is not None else Verdict.NO_DATA,
            c_p99,
            1.2,
            "s",
            0,
            "canary p99 ok" if c_p99 is not None else "no canary latency data",
        ),
        MetricVerdict(
            "error_ratio",
            Verdict(verdict) if c_err is not None else Verdict.NO_DATA,
            c_err,
            0.005,
            "ratio",
            3,
            "canary 5xx ratio 2% > 0.5% for 3/3 evaluations",
        ),
        MetricVerdict(
            "p99_ratio",
            Verdict.WARN if ratio is not None else Verdict.NO_DATA,
            ratio,
            1.2,
            "x",
            1,
            "p99 canary/stable 2.25x > 1.2x for 1/3 evaluations",
        ),
        MetricVerdict("drift", Verdict.WARN, 0.303, 0.1, "V", 0, "latency distributions differ"),
    )
    return ServiceCanary(
        name=name,
        verdict=Verdict(verdict),
        reason="canary 5xx ratio 2% > 0.5% for 3/3 evaluations",
        metrics=metrics,
        canary=VariantMetrics(
            "canary", c_p99, c_err, c_rps, 1314.0, (Bucket("0.5", 1200.0), Bucket("+Inf", 1314.0))
        ),
        stable=VariantMetrics("stable", s_p99, s_err, s_rps, 11280.0),
        drift=DriftTest("chi-square test of homogeneity", 1157.0, 6, 1.07e-246, 0.303, bins=7),
        exemplars=tuple(exemplars),
        variant_label="version",
        window="1m",
        evaluated_at=at,
        stale=stale,
        warnings=tuple(warnings),
        errors=tuple(errors),
    )


def canary_snap(*services: ServiceCanary, seq: int = 1, t: float = NOW - 1) -> Snapshot:
    return snap("canary", CanaryData("http://127.0.0.1:9090", services), ok(t), seq=seq, t=t)


def summary_text(app) -> str:
    return str(app.query_one("#canary-summary", Static).render())


async def show(pilot, app, *snaps: Snapshot) -> None:
    for s in snaps:
        app.runtime.bus.publish(s)
    await pilot.pause()
    await pilot.press("3")  # at 80 columns only the focused pane has a body
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_verdicts_and_numbers_beside_thresholds(tmp_path, size):
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await show(pilot, app, canary_snap(service()))
        text = summary_text(app)
        assert "✖ FAIL" in text and "checkout" in text
        assert "canary 5xx ratio 2% > 0.5% for 3/3 evaluations" in text  # the reason
        lines = {
            line.split()[0] + (" " + line.split()[1] if line.startswith(("5xx", "p99 ratio")) else ""): line
            for line in text.splitlines()
            if line.strip()
        }
        assert lines["p99"].split()[1:7] == ["450", "ms", "200", "ms", "≤", "1.2"]
        assert "pass" in lines["p99"]
        assert lines["5xx ratio"].split()[2:6] == ["2%", "0.1%", "≤", "0.5%"] and "fail" in lines["5xx ratio"]
        assert "21.9/s" in lines["throughput"] and "188/s" in lines["throughput"]
        assert (
            "2.25x" in lines["p99 ratio"]
            and "≤ 1.2x" in lines["p99 ratio"]
            and "warn 1" in lines["p99 ratio"]
        )
        # The distribution test is named, with statistic, p-value and effect size.
        drift = " ".join(text.split())
        assert "chi-square test of homogeneity" in drift
        assert "χ²=1157 df=6 p=1.07e-246 Cramér's V=0.303" in drift
        # What the operator sees first without scrolling: the badge and the service.
        screen = screen_text(app)
        assert "✖ FAIL  checkout" in screen and "3 Canary" in screen
        # and the header, before any key, names the service and why
        assert "✖ canary FAIL checkout: 5xx 2%, p99 2.25x stable" in screen.splitlines()[2]


async def test_nan_and_missing_numbers_show_no_data_never_zero(tmp_path):
    svc = service(c_p99=float("nan"), s_p99=None, c_err=float("inf"), c_rps=None, verdict="no_data")
    # The way a real payload arrives (collector -> JSON -> replay/store): NaN/Inf become None.
    round_tripped = from_json(to_json(canary_snap(svc)))
    canary = round_tripped.data.services[0].canary
    assert canary.p99_s is None and canary.error_ratio is None
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, round_tripped)
        text = summary_text(app)
        assert "○ NO DATA" in text
        rows = [
            line for line in text.splitlines() if line.startswith(("p99 ", "5xx", "throughput", "p99 ratio"))
        ]
        assert len(rows) == 4
        for row in rows:
            assert "no data" in row, row
            assert " 0 ms" not in row and " 0%" not in row and " 0/s" not in row and " 0x" not in row
        assert "nan" not in text.lower() and "inf" not in text.lower()


async def test_stale_badge_warnings_and_errors_are_shown_and_cleaned(tmp_path):
    svc = service(
        at=NOW - 42,
        stale=True,
        warnings=("PromQL info: \x1b[31mmetric might not be a counter",),
        errors=("canary.p99: timeout after 5s",),
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, canary_snap(svc))
        text = summary_text(app)
        assert "STALE: last good data 42s ago" in text
        assert "Prometheus warning: PromQL info: \\x1b[31mmetric might not be a counter" in text
        assert "\x1b" not in text
        assert "query failed: canary.p99: timeout after 5s" in text


async def test_evaluations_from_history_are_named_and_a_history_failure_said(tmp_path):
    read = replace(service(), history_at=(NOW - 21, NOW - 11))
    unread = replace(service("pay"), history_note="canary p99: HTTP 403 \x1b[31mforbidden (+7 more)")
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, canary_snap(read))
        text = summary_text(app)
        assert "2 evaluations from Prometheus history (20s ago to 10s ago)" in text
        assert "history not read" not in text
        await show(pilot, app, canary_snap(unread, seq=2))
        text = summary_text(app)
        assert "history not read: canary p99: HTTP 403 \\x1b[31mforbidden (+7 more)" in text
        assert "from Prometheus history" not in text and "\x1b" not in text


async def test_charts_draw_the_history_and_threshold(tmp_path):
    app = make_app(tmp_path, history=50)
    evaluations = [
        service(c_p99=0.1 * (i + 1), c_err=None if i == 2 else 0.001 * i, at=NOW - 60 + 10 * i)
        for i in range(6)
    ]
    snaps = [canary_snap(s, seq=i + 1, t=s.evaluated_at) for i, s in enumerate(evaluations)]
    # A stale sample repeats old numbers: it is not a new point.
    snaps.append(canary_snap(replace(evaluations[-1], stale=True), seq=7, t=NOW))
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, *snaps)
        await pilot.press("z")  # the pane gets the whole screen: charts in view
        await pilot.pause()
        p99 = app.query_one("#chart-p99", MetricChart)
        errors = app.query_one("#chart-errors", MetricChart)
        assert p99.points_drawn == 12  # 6 canary + 6 stable evaluations
        assert errors.points_drawn == 11  # the canary's missing error ratio is left out, not 0
        plotted = str(p99.render())
        assert "p99 (ms) — checkout, limit 1200" in plotted and "canary" in plotted and "stable" in plotted
        assert "5xx ratio (%) — checkout, limit 0.5" in str(errors.render())
        assert "p99 (ms)" in screen_text(app)
        text = summary_text(app)
        p99_row = next(line for line in text.splitlines() if line.startswith("p99 "))
        assert p99_row.rstrip().endswith(sparkline([0.1 * (i + 1) for i in range(6)], 30))
        await pilot.press("z")
        await pilot.pause()
        assert app.screen.maximized is None


async def test_charts_without_any_data_say_so(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(
            pilot,
            app,
            canary_snap(service(c_p99=None, s_p99=None, c_err=None, s_err=None, verdict="no_data")),
        )
        chart = app.query_one("#chart-p99", MetricChart)
        assert chart.points_drawn == 0
        assert "no data yet" in str(chart.render())


class Catcher(EbpftopApp):
    def __init__(self, runtime, **kw):
        super().__init__(runtime, **kw)
        self.traces: list[tuple[str, str]] = []
        self.times: list[float | None] = []  # each exemplar's time, handed to Profiles

    def on_trace_selected(self, message: TraceSelected) -> None:
        self.traces.append((message.trace_id, message.service))
        self.times.append(message.at)


async def test_exemplar_trace_ids_are_selectable(tmp_path):
    from ebpftop.core.runtime import Runtime

    slow = (
        Exemplar("4bf92f3577b34da6a3ce929d0e0e4736", 0.61, NOW - 5, "1"),
        Exemplar("00f067aa0ba902b7\x1b]0;x\x07", 0.55, NOW - 7, "1"),
    )
    app = Catcher(Runtime(settings(tmp_path), collectors=[]), clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, canary_snap(service(exemplars=slow)))
        olist = app.query_one("#canary-exemplars", OptionList)
        assert olist.option_count == 2
        shown = str(olist.get_option_at_index(1).prompt)
        assert "\x1b" not in shown and "00f067aa0ba902b7\\x1b]0;x\\x07" in shown
        await pilot.press("x")
        assert app.focused is olist
        await pilot.press("enter")
        await pilot.pause()
        assert app.traces == [("4bf92f3577b34da6a3ce929d0e0e4736", "checkout")]
        pane = app.query_one(CanaryPane)
        assert pane.selected_trace == ("4bf92f3577b34da6a3ce929d0e0e4736", "checkout")
        # A new evaluation with the same exemplars keeps the selection highlighted.
        app.runtime.bus.publish(canary_snap(service(exemplars=slow), seq=2))
        await pilot.pause()
        await pilot.press("3", "x")  # following a trace focused the Profiles pane; back to the list
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.traces[-1] == ("00f067aa0ba902b7\x1b]0;x\x07", "checkout")  # the raw id, for the lookup


async def test_the_highlight_stays_on_its_trace_id_across_refreshes(tmp_path):
    """The list is rebuilt when the slow requests change (every few seconds in the lab):
    the highlight follows its trace id to its new row, Enter follows that trace (with
    its exemplar's time), and a trace that left the list is said, not silently lost."""
    from ebpftop.core.runtime import Runtime

    a, b, c, d = (Exemplar(f"{n:032x}", 0.6 - n / 100, NOW - 5 - n, "1") for n in range(1, 5))
    app = Catcher(Runtime(settings(tmp_path), collectors=[]), clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, canary_snap(service(exemplars=(a, b, c))))
        olist = app.query_one("#canary-exemplars", OptionList)
        note = app.query_one("#canary-trace-note", Static)
        await pilot.press("x", "down")
        assert olist.highlighted == 1  # b
        # a slower request arrives: b is now third in a rebuilt list
        app.runtime.bus.publish(canary_snap(service(exemplars=(d, a, b)), seq=2))
        await wait_until(pilot, lambda: olist.option_count == 3 and "00000004" in prompt(olist, 0))
        assert olist.highlighted == 2 and b.trace_id in prompt(olist, 2)
        assert note.has_class("-empty")
        await pilot.press("enter")
        await pilot.pause()
        assert app.traces[-1] == (b.trace_id, "checkout") and app.times[-1] == b.time
        # b leaves the list (older than the window): the pane says so where the highlight was
        await pilot.press("3", "x")  # back to the list: the highlight is still on b
        assert olist.highlighted == 2
        app.runtime.bus.publish(canary_snap(service(exemplars=(d, c)), seq=3))
        await wait_until(pilot, lambda: olist.option_count == 2)
        assert olist.highlighted == 1
        text = str(note.render())
        assert not note.has_class("-empty")
        assert (
            f"trace {b.trace_id} left the list (no longer among the slowest requests of the last 1m)" in text
        )
        assert "the highlight moved to the row in its place" in text
        await pilot.press("enter")
        await pilot.pause()
        assert app.traces[-1] == (c.trace_id, "checkout")  # what the highlight shows, said above
        assert note.has_class("-empty")


async def test_x_without_slow_trace_ids_says_why(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, canary_snap(service(exemplars=())))
        await pilot.press("x")
        await pilot.pause()
        said = [str(n.message) for n in app._notifications]
        assert any(
            "no slow trace ids: Prometheus returned no exemplar with a trace id at or above the canary's "
            "p99 bucket (checkout in the last 1m)" in m
            for m in said
        ), said


def prompt(olist: OptionList, i: int) -> str:
    return str(olist.get_option_at_index(i).prompt)


async def wait_until(pilot, ok, frames: int = 50) -> None:
    for _ in range(frames):
        if ok():
            return
        await pilot.pause(0.05)
    assert ok()


async def test_rollout_revisions_weight_bar_and_phase(tmp_path):
    state = RolloutState(
        "checkout",
        "haproxy",
        "/run/haproxy.sock",
        "v1",
        "v2\x1b[2J",
        80.0,
        20.0,
        "Progressing",
        1,
        4,
        can_rollback=False,
        rollback_reason="forbidden: cannot patch rollouts/status",
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, canary_snap(service()), snap("rollout", RolloutData((state,))))
        text = summary_text(app)
        assert "rollout haproxy  phase Progressing  step 1/4" in text
        bar_line = next(line for line in text.splitlines() if line.startswith("stable v1 80%"))
        assert "20% canary v2\\x1b[2J" in bar_line
        bar = bar_line.split()[3]
        assert set(bar) == {"█", "▒"} and bar.count("▒") * 4 == bar.count("█")
        assert "rollback disabled: forbidden: cannot patch rollouts/status" in text
        # A new rollout state alone redraws the pane.
        app.runtime.bus.publish(
            snap(
                "rollout",
                RolloutData((replace(state, stable_weight=100.0, canary_weight=0.0, phase="Degraded"),)),
                seq=2,
            )
        )
        await pilot.pause()
        text = summary_text(app)
        assert "phase Degraded" in text and "stable v1 100%" in text


def test_weight_bar_and_sparkline_edges():
    assert weight_bar(None, None, 4) == "????"
    assert weight_bar(99.5, 0.5, 10) == "█" * 9 + "▒"  # any canary traffic stays visible
    assert weight_bar(100.0, 0.0, 5) == "█" * 5
    assert weight_bar(None, 25.0, 4) == "███▒"
    assert sparkline([None, None], 5) == ""
    assert sparkline([1.0, None, 2.0], 5) == "▁ █"
    assert sparkline([0.0, 0.0], 5) == "▁▁"


async def test_demo_recording_canary_pane(tmp_path):
    runtime = ReplayRuntime.from_file(settings(tmp_path), str(DATA / "demo.rec"))
    runtime.replay.paused = True
    app = EbpftopApp(runtime)
    async with app.run_test(size=(160, 48)) as pilot:
        while not runtime.replay.at_end:
            await pilot.press("right_square_bracket")
        await pilot.pause()
        data = runtime.store.latest("canary").data
        svc = data.services[0]
        text = summary_text(app)
        assert svc.name in text and svc.reason.split(";")[0] in " ".join(text.split())
        p99_row = next(line for line in text.splitlines() if line.startswith("p99 "))
        from ebpftop.tui.panes.canary.render import seconds

        assert seconds(svc.canary.p99_s) in p99_row and seconds(svc.stable.p99_s) in p99_row
        assert app.query_one("#chart-p99", MetricChart).points_drawn > 0
