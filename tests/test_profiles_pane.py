"""The Profiles pane (Pilot, no root): tag sets with their shares, Enter's top
functions and flame rows, canary vs stable, `c` through the gate (and absent in
kiosk), the exemplar trace_id link (matched and fallback), 80x24 and 160x48, and the
demo recording."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest
from app_support import NOW, T0, make_app, ok, screen_text, settings, snap
from textual.widgets import Static

from ebpftop.collectors.profiles.aggregate import summarize
from ebpftop.collectors.profiles.model import ProfilesData, SourceStatus, StackSample, make_tags
from ebpftop.core.replay import ReplayRuntime
from ebpftop.tui.panes.canary.pane import TraceSelected
from ebpftop.tui.panes.profiles.detail import ProfileDetailScreen
from ebpftop.tui.panes.profiles.pane import ProfilesPane
from ebpftop.tui.panes.table import LineTable
from ebpftop.tui.screens.confirm import ConfirmScreen

DATA = pathlib.Path(__file__).parent / "data"
PPROF = "http://127.0.0.1:6060/debug/pprof/profile"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def bpf_tags(service: str, version: str, pid: int) -> tuple:
    return make_tags(
        {
            "service": service,
            "version": version,
            "pid": str(pid),
            "env": "prod",
            "comm": service,
            "source": "bpf",
        }
    )


def stack(frames: str, count: int, tags) -> StackSample:
    return StackSample(tuple(frames.split(";")), count, tags)


STABLE = bpf_tags("checkout", "stable", 901)
CANARY = bpf_tags("checkout", "canary", 933)
OTHER = bpf_tags("search\x1b[31m", "v7", 700)  # a hostile service name


def bpf_stacks() -> list[StackSample]:
    return [
        stack("main;serve;handle;json.encode", 60, STABLE),
        stack("main;serve;handle;cart.total", 20, STABLE),
        stack("main;serve;handle;regexp.compile", 30, CANARY),
        stack("main;serve;handle;json.encode", 10, CANARY),
        stack("main;index;score", 80, OTHER),
    ]


def pprof_stacks() -> list[StackSample]:
    labels = lambda trace: make_tags({"service": "checkout", "trace_id": trace, "source": PPROF})  # noqa: E731
    return [
        stack("main;handler;slowPath;crypto.sha256", 7, labels(TRACE)),
        stack("main;handler;fastPath", 3, labels("0000000000000000000000000000ffff")),
    ]


def profiles_data(*, captures=(), sources=None) -> ProfilesData:
    window = summarize("bpf 10s", "bpf", NOW - 10, NOW, bpf_stacks())
    return ProfilesData(
        hz=49,
        windows=(window,),
        captures=tuple(captures),
        sources=sources or (SourceStatus("bpf", "ok", "", NOW),),
    )


def with_pprof() -> ProfilesData:
    return profiles_data(captures=(summarize(f"pprof {PPROF}", PPROF, NOW - 10, NOW, pprof_stacks()),))


async def show(pilot, app, data: ProfilesData) -> ProfilesPane:
    app.runtime.bus.publish(snap("profiles", data, ok(NOW - 1), t=NOW - 1))
    await pilot.pause()
    await pilot.press("4")  # at 80 columns only the focused pane has a body
    await pilot.pause()
    return app.query_one(ProfilesPane)


def table_rows(app) -> list[list[str]]:
    """Every row of the table's order (built here: the table builds only its window)."""
    table = app.query_one("#profiles-table", LineTable)
    return [[text.strip() for text, _style in table.row(i).cells] for i in range(table.count)]


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_tag_sets_with_their_share(tmp_path, size):
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        pane = await show(pilot, app, profiles_data())
        assert not pane.has_class("-nodata")
        table = app.query_one("#profiles-table", LineTable)
        assert [c.label for c in table.columns] == [
            "share",
            "samples",
            "service",
            "env",
            "version",
            "pid",
            "comm",
        ]
        rows = table_rows(app)
        # 200 samples: 80 other (pid 700), 80 stable (pid 901), 40 canary; heaviest
        # first, ties in tag order.
        assert [r[:3] for r in rows] == [
            ["40.0%", "80", "search\\x1b[31m"],
            ["40.0%", "80", "checkout"],
            ["20.0%", "40", "checkout"],
        ]
        assert rows[2][4:] == ["canary", "933", "checkout"]  # comm from the stacks
        assert "bpf 10s: 200 samples" in text_of(app, "#profiles-title")
        screen = screen_text(app)
        assert "\x1b[31m" not in screen and "4 Profiles" in screen
        assert "search\\x1b[31m" in screen
        if size == (160, 48):  # the comparison fits below the table
            assert "canary vs stable" in screen


async def test_enter_shows_top_functions_and_flame_rows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, app, profiles_data())
        await pilot.press("down", "down")  # the canary row
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, ProfileDetailScreen)
        top = text_of(detail, "#detail-top")
        by_self, by_total = top.split("top functions by total")
        first = by_self.splitlines()[2].split()
        assert first == ["30", "75.0%", "30", "75.0%", "regexp.compile"]
        assert by_total.splitlines()[2].split() == ["0", "0.0%", "40", "100.0%", "handle"]
        flame = text_of(detail, "#detail-flame").splitlines()
        width = detail.size.width - 4
        assert flame[0].startswith("all") and len(flame[0]) == width
        assert flame[1].startswith("main") and flame[3].startswith("handle")
        # 30 of 40 samples: regexp.compile takes three quarters of the row.
        leaf = flame[4]
        assert leaf.startswith("regexp.compile") and leaf.index("json.encode") == 30 * width // 40
        assert "version=canary" in text_of(detail, "#detail-title")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ProfileDetailScreen)


async def test_canary_vs_stable_comparison(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, profiles_data())
        text = text_of(app, "#profiles-compare")
        lines = text.splitlines()
        assert "service=checkout" in lines[0] and "canary 40, stable 80" in lines[0]
        # regexp.compile: 75% of canary, 0% of stable; json.encode 25% vs 75%.
        assert lines[1].split() == ["+75.0%", "75.0%", "0.0%", "regexp.compile"]
        assert lines[2].split() == ["-50.0%", "25.0%", "75.0%", "json.encode"]


async def test_comparison_says_when_nothing_is_tagged(tmp_path):
    app = make_app(tmp_path)
    only = summarize("bpf 10s", "bpf", NOW - 10, NOW, [stack("a;b", 5, OTHER)])
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, app, ProfilesData(hz=49, windows=(only,)))
        assert "no sample is tagged canary or stable" in text_of(app, "#profiles-compare")


async def test_next_profile_and_source_errors(tmp_path):
    bad = SourceStatus("http://127.0.0.1:1/debug/pprof/profile", "error", "truncated gzip body\x07")
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        data = with_pprof()
        data = ProfilesData(data.hz, data.windows, data.captures, (SourceStatus("bpf", "ok"), bad))
        pane = await show(pilot, app, data)
        title = text_of(app, "#profiles-title")
        assert "(1/2)" in title and "truncated gzip body\\x07" in title
        await pilot.press("v")
        await pilot.pause()
        assert pane.chosen == f"pprof {PPROF}"
        assert [r[2] for r in table_rows(app)] == ["checkout", "checkout"]
        assert "trace_id" in [c.label for c in app.query_one("#profiles-table", LineTable).columns]


# --- the trace_id link -------------------------------------------------------------------


async def test_trace_selected_matched_filters_to_the_trace(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, with_pprof())
        await pilot.press("1")
        app.query_one("#pane-canary").post_message(TraceSelected(TRACE, "checkout"))
        await pilot.pause()
        assert app.focused is pane
        assert pane.trace is not None and pane.view.matched
        title = text_of(app, "#profiles-title")
        assert f"trace_id={TRACE}: 7 samples carry it" in title
        rows = table_rows(app)
        assert len(rows) == 1 and rows[0][:2] == ["100.0%", "7"]
        assert "esc: back to the profile" in text_of(app, "#profiles-keys")
        await pilot.press("escape")
        await pilot.pause()
        assert pane.trace is None and "bpf 10s" in text_of(app, "#profiles-title")


async def test_trace_selected_without_samples_falls_back_to_the_canary_service(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, profiles_data())  # BPF only: no sample carries a trace_id
        await pilot.press("3")
        hostile = TRACE + "\x1b]0;owned\x07"
        app.query_one("#pane-canary").post_message(TraceSelected(hostile, "checkout"))
        await pilot.pause()
        assert app.focused is pane and not pane.view.matched
        title = text_of(app, "#profiles-title")
        assert title.startswith(
            f"no sample carries trace_id={TRACE}\\x1b]0;owned\\x07 (no pprof profile: only pprof samples "
            "carry trace ids; give --pprof URL); showing service=checkout (120 samples), its canary's 40"
        )
        assert "\x1b]" not in screen_text(app)  # the OSC never reached the screen
        rows = table_rows(app)
        assert [(r[1], r[4], r[5]) for r in rows] == [("40", "canary", "933")]
        assert pane.query_one("#profiles-title").has_class("-filtered")


async def test_a_trace_newer_than_the_profile_says_so_then_finds_its_samples(tmp_path):
    """Followed before the profile holding it arrived: the title says why nothing carries
    it; the next profile has it, and the pane shows it and says so in a toast."""
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        older = summarize(f"pprof {PPROF}", PPROF, NOW - 20, NOW - 10, pprof_stacks()[1:])
        pane = await show(pilot, app, profiles_data(captures=(older,)))
        app.query_one("#pane-canary").post_message(TraceSelected(TRACE, "checkout", NOW - 5))
        await pilot.pause()
        title = text_of(app, "#profiles-title")
        assert not pane.view.matched
        assert f"no sample carries trace_id={TRACE} (pprof of checkout at {PPROF}," in title
        assert "is newer than the last profile; its samples come with the next" in title
        app.runtime.bus.publish(snap("profiles", with_pprof(), ok(NOW), t=NOW))
        for _ in range(50):
            if pane.view.matched:
                break
            await pilot.pause(0.05)
        assert pane.view.matched and f"trace_id={TRACE}: 7 samples carry it" in text_of(
            app, "#profiles-title"
        )
        assert any(f"trace_id={TRACE}: 7 samples carry it" in str(n.message) for n in app._notifications)


# --- capture -------------------------------------------------------------------------------


class FakeProfilesCollector:
    """Stands in for ProfilesCollector: records what it was asked to capture."""

    name = "profiles"
    urgent = False  # as the real one: starts after the canary (core/runtime.py)
    hz = 49
    pprof_seconds = 10.0

    def __init__(self) -> None:
        self.asked: list[dict] = []

    async def capture(self, **want):
        self.asked.append(want)
        return summarize(
            "capture " + " ".join(f"{k}={v}" for k, v in want.items()),
            "bpf",
            NOW,
            NOW + 10,
            [stack("main;burn", 12, CANARY)],
        )

    # Collector protocol bits the runtime's runner calls; this one never publishes.
    interval = 3600.0

    async def start(self) -> None:
        await asyncio.sleep(0)

    async def collect(self):
        raise AssertionError("not polled in this test")

    async def close(self) -> None:
        return None


def audit_entries(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_capture_goes_through_the_gate_and_is_audited(tmp_path):
    fake = FakeProfilesCollector()
    app = make_app(tmp_path, collectors=[fake])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, profiles_data())
        await pilot.press("down", "down")  # canary row, pid 933
        assert pane.capture_label() == "pid=933"
        assert "c: capture now" in text_of(app, "#profiles-keys")
        assert any(b.binding.action == "capture" for b in app.active_bindings.values())
        await pilot.press("c")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        said = confirm.action.description
        assert "pid 933" in said and "10 s" in said and "service=checkout" in said
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.asked == [{"pid": "933"}]
        entries = audit_entries(tmp_path)
        assert [e["event"] for e in entries] == ["intent", "result"]
        assert entries[0]["action"]["kind"] == "profiles.capture"
        assert entries[0]["action"]["params"] == {"pid": "933", "seconds": 10.0}
        assert entries[1]["ok"] is True and "captured 12 samples for pid=933" in entries[1]["message"]
        # Cancelled: nothing captured, the refusal is on record.
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        assert fake.asked == [{"pid": "933"}]
        assert [e["event"] for e in audit_entries(tmp_path)] == ["intent", "result", "cancelled"]


async def test_capture_of_a_pprof_row_names_the_url(tmp_path):
    fake = FakeProfilesCollector()
    app = make_app(tmp_path, collectors=[fake])
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show(pilot, app, with_pprof())
        await pilot.press("v")
        await pilot.pause()
        assert pane.capture_label() == f"pprof {PPROF}"
        await pilot.press("c")
        await pilot.pause()
        assert PPROF in app.screen.action.description
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        assert fake.asked == [{"url": PPROF}]


async def test_kiosk_capture_is_absent_and_inert(tmp_path):
    fake = FakeProfilesCollector()
    app = make_app(tmp_path, kiosk=True, collectors=[fake])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, profiles_data())
        assert pane.check_action("capture", ()) is False
        assert "capture" not in text_of(app, "#profiles-keys")
        assert all(b.binding.action != "capture" for b in app.active_bindings.values())
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert fake.asked == []
        # Called directly anyway: refused, and the refusal audited by the read-only gate.
        pane.action_capture()
        await app.workers.wait_for_complete()
        assert fake.asked == []
        assert [e["event"] for e in audit_entries(tmp_path)] == ["refused"]


# --- the demo recording --------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_demo_recording(tmp_path, size):
    runtime = ReplayRuntime.from_file(settings(tmp_path), str(DATA / "demo.rec"))
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(runtime, clock=lambda: T0)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for _ in range(600):  # bounded; a loaded machine may take seconds to replay the first
            if runtime.store.latest("profiles") is not None:
                break
            await asyncio.sleep(0.05)
        await pilot.press("4")
        await pilot.pause()
        pane = app.query_one(ProfilesPane)
        rows = table_rows(app)
        assert rows and rows[0][2] == "checkout"
        shares = [float(r[0].rstrip("%")) for r in rows]
        assert abs(sum(shares) - 100.0) < 0.2
        assert "capture" not in text_of(app, "#profiles-keys")  # a replay is read-only
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ProfileDetailScreen)
        assert "top functions by self" in app.screen.text()
        assert pane.is_attached


async def test_enter_on_a_canary_exemplar_opens_the_profiles_on_its_trace(tmp_path):
    from test_canary_pane import canary_snap, service

    from ebpftop.collectors.canary.exemplars import Exemplar

    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, app, with_pprof())
        app.runtime.bus.publish(canary_snap(service(exemplars=(Exemplar(TRACE, 0.61, NOW - 5, "1"),))))
        await pilot.pause()
        await pilot.press("3", "x", "enter")
        await pilot.pause()
        assert app.focused is pane
        assert f"trace_id={TRACE}: 7 samples carry it" in text_of(app, "#profiles-title")
        assert [r[:2] for r in table_rows(app)] == [["100.0%", "7"]]


def test_column_widths_cut_the_widest_first():
    from ebpftop.tui.panes.profiles.view import fit_widths

    columns = ["service", "trace_id", "pid"]
    values = [["checkout", TRACE, "933"]]
    # Everything fits: natural widths.
    assert fit_widths(columns, values, 80) == [8, 32, 3]
    # 40 columns: 3 of gaps, 37 for values; only the trace_id is cut.
    assert fit_widths(columns, values, 40) == [8, 26, 3]
    # Far too narrow: nothing below the floor of 6 (the header needs its width anyway).
    assert fit_widths(columns, values, 10) == [6, 6, 3]
