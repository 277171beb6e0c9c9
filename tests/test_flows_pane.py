"""The Flows pane (Pilot, no root): sort, filter (bad term shown at its column, previous
filter kept), grouping, Enter's detail (chart from the store's history, process, TCP
events), the counters line and its alarms, hostile process names, cheap redraws,
pause, 80x24 and 160x48, and the demo recording. Data comes from a runtime with no
collectors: the tests publish FlowsData snapshots on its bus."""

from __future__ import annotations

import pathlib
from dataclasses import replace

import pytest
from app_support import NOW, T0, make_app, ok, screen_text, settings, snap, terminal_bytes
from test_app_hostile import HOSTILE, MARKUP, assert_nothing_raw_reaches_the_terminal
from textual.widgets import Input, Static

from ebpftop.collectors.flows.model import FlowPath, FlowRecord, FlowsData, IfaceStatus, TcpEvent
from ebpftop.core.replay import ReplayRuntime
from ebpftop.tui.panes.flows.chart import RateChart
from ebpftop.tui.panes.flows.detail import FlowDetailScreen
from ebpftop.tui.panes.flows.filter import FlowFilterScreen, caret_lines
from ebpftop.tui.panes.flows.pane import FlowsPane
from ebpftop.tui.panes.flows.view import short_size, squeeze
from ebpftop.tui.panes.table import LineTable

DATA = pathlib.Path(__file__).parent / "data"


def flow(
    src,
    sport,
    dst,
    dport,
    *,
    bps,
    pps,
    total,
    proto="tcp",
    direction="egress",
    iface="eth0",
    retransmits=0,
    latency=None,
    pid=None,
    comm=None,
    service=None,
    events=(),
) -> FlowRecord:
    return FlowRecord(
        iface,
        direction,
        proto,
        src,
        sport,
        dst,
        dport,
        packets=int(total / 1000),
        bytes=total,
        bps=bps,
        pps=pps,
        first_seen=T0 - 30,
        last_seen=T0,
        retransmits=retransmits,
        connect_latency_ms=latency,
        pid=pid,
        comm=comm,
        service=service,
        events=tuple(events),
    )


# Each flow leads on exactly one sort key, so every `s` press reorders the rows.
WEB = flow(
    "10.0.0.1",
    40000,
    "10.0.0.9",
    443,
    bps=9000.0,
    pps=10.0,
    total=50_000,
    retransmits=1,
    latency=0.5,
    pid=100,
    comm="nginx",
    service="web",
)
DNS = flow(
    "10.0.0.1",
    53000,
    "10.0.0.53",
    53,
    proto="udp",
    bps=500.0,
    pps=90.0,
    total=20_000,
    pid=200,
    comm="resolved",
)
BULK = flow(
    "10.0.0.1",
    40001,
    "192.0.2.7",
    443,
    bps=100.0,
    pps=1.0,
    total=900_000,
    retransmits=2,
    latency=1.5,
    pid=100,
    comm="nginx",
    service="web",
)
SLOW = flow(
    "10.0.0.1",
    40002,
    "192.0.2.8",
    8080,
    bps=50.0,
    pps=0.5,
    total=1_000,
    retransmits=40,
    latency=3.0,
    pid=300,
    comm="curl",
)
LATE = flow(
    "10.0.0.1",
    40003,
    "192.0.2.9",
    80,
    bps=10.0,
    pps=0.2,
    total=500,
    latency=250.0,
    pid=301,
    comm="curl",
    service="probe",
)
FLOWS = (WEB, DNS, BULK, SLOW, LATE)


def flows_data(flows=FLOWS, **changes) -> FlowsData:
    base = FlowsData(
        flows=tuple(flows),
        flows_tracked=len(flows) + 10,
        total_bytes=sum(f.bytes for f in flows),
        total_packets=sum(f.packets for f in flows),
        total_bps=sum(f.bps or 0 for f in flows),
        total_pps=100.0,
        evictions=0,
        update_failures=0,
        not_ip_packets=0,
        truncated_packets=0,
        events_total=50,
        lost_events=0,
        tcp_events_error=None,
        ifaces=(IfaceStatus("eth0", 2, "tcx"),),
        max_flows=65536,
    )
    return replace(base, **changes)


async def show(pilot, data: FlowsData, *, seq=1, t=NOW - 1) -> FlowsPane:
    pilot.app.runtime.bus.publish(snap("flows", data, ok(t), seq=seq, t=t))
    await pilot.pause()
    return pilot.app.query_one(FlowsPane)


def rows(app) -> list[list[str]]:
    table = app.query_one("#flows-table", LineTable)
    return [[text.strip() for text, _style in row.cells] for row in table.shown()]


def column_labels(app) -> list[str]:
    return [c.label for c in app.query_one("#flows-table", LineTable).columns]


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


def remote_of(row: list[str]) -> str:
    return row[0]


# --- pure helpers ------------------------------------------------------------------


def test_short_sizes_and_squeeze():
    assert [short_size(v) for v in (None, 0, 912, 4915.2, 38000, 1023 * 1024**2)] == [
        "—",
        "0",
        "912",
        "4.8K",
        "37K",
        "1023M",
    ]
    assert squeeze("2001:db8:aaaa:bbbb::1]:443", 12) == "2001:…1]:443"
    assert squeeze("short", 12) == "short"


def test_caret_points_at_the_term_even_after_escapes_and_in_long_text():
    text, carets = caret_lines("a\x1bb prc:x", 4, 5, 60)
    assert text == "a\\x1bb prc:x"  # the escape is shown, and the caret moved with it
    assert text[carets.index("^") : carets.index("^") + 5] == "prc:x" and carets.count("^") == 5
    long = "port:1 " * 20 + "prc:x"
    shown, carets = caret_lines(long, long.index("prc"), 5, 40)
    assert len(shown) <= 40 and shown.startswith("…")
    assert shown[carets.index("^") : carets.index("^") + 5] == "prc:x"


# --- the pane ------------------------------------------------------------------------


async def test_sort_cycles_and_reorders_rows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data())
        seen = {}
        for label, leader in (
            ("bytes/s", "10.0.0.9:443"),
            ("packets/s", "10.0.0.53:53"),
            ("total bytes", "192.0.2.7:443"),
            ("retransmits", "192.0.2.8:8080"),
            ("connect latency", "192.0.2.9:80"),
            ("bytes/s", "10.0.0.9:443"),
        ):
            assert f"sort {label}" in text_of(app, "#flows-status")
            assert leader in remote_of(rows(app)[0]), (label, rows(app)[0])
            seen[label] = [remote_of(r) for r in rows(app)]
            if label == "bytes/s":
                assert "B/s▼" in column_labels(app)  # the sort column is marked
            await pilot.press("s")
            await pilot.pause()
        assert len({tuple(v) for v in seen.values()}) == 5  # five different orders
        # Unknown latency (UDP) sorts last, not as 0.
        assert "10.0.0.53:53" in seen["connect latency"][-1]


async def test_filter_applies_and_a_bad_filter_is_shown_at_its_term(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        await pilot.press("slash")
        await pilot.pause()
        assert isinstance(app.screen, FlowFilterScreen)
        await pilot.press(*"port:443", "enter")
        await pilot.pause()
        assert app.screen is not None and not isinstance(app.screen, FlowFilterScreen)
        assert pane.filter.text == "port:443"
        assert sorted(remote_of(r).split("→")[-1].strip() for r in rows(app)) == [
            "10.0.0.9:443",
            "192.0.2.7:443",
        ]
        assert "filter port:443" in text_of(app, "#flows-status")
        assert "2 of 5 shown" in text_of(app, "#flows-status")

        # A bad filter: the dialog stays open with the error at the term's column.
        await pilot.press("slash")
        await pilot.pause()
        dialog = app.screen
        field = dialog.query_one(Input)
        assert field.value == "port:443"  # starts from the current filter
        field.value = "port:443 prc:nginx"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and dialog.has_class("-error")
        error = text_of(dialog, "#filter-error")
        lines = error.splitlines()
        assert lines[0] == "port:443 prc:nginx"
        assert lines[1] == " " * 9 + "^" * 9  # under `prc:nginx`
        assert "column 10" in error and "unknown field 'prc'" in error
        assert pane.filter.text == "port:443"  # nothing changed behind the dialog
        await pilot.press("escape")
        await pilot.pause()
        assert pane.filter.text == "port:443" and len(rows(app)) == 2

        # An empty filter shows every flow again.
        await pilot.press("slash")
        await pilot.pause()
        app.screen.query_one(Input).value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert pane.filter.empty and len(rows(app)) == 5


async def test_grouping_aggregates_rows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data())
        await pilot.press("g")
        await pilot.pause()
        assert "group process" in text_of(app, "#flows-status")
        assert column_labels(app)[:2] == ["process", "flows"]
        by_key = {r[0]: r for r in rows(app)}
        # nginx [100] has WEB and BULK: 2 flows, 9100 B/s = 8.9K, 950000 bytes = 928K, 3 retransmits,
        # the slowest connect 1.5 ms.
        assert by_key["nginx [100]"][1:] == ["2", "8.9K", "11", "928K", "3", "1.50ms"]
        assert by_key["curl [300]"][1] == "1" and len(rows(app)) == 4
        await pilot.press("g")
        await pilot.pause()
        assert "group service" in text_of(app, "#flows-status")
        assert sorted(r[0] for r in rows(app)) == ["(no service)", "probe", "web"]
        assert {r[0]: r[1] for r in rows(app)}["(no service)"] == "2"
        await pilot.press("g")
        await pilot.pause()
        assert sorted(r[0] for r in rows(app)) == [
            "10.0.0.53",
            "10.0.0.9",
            "192.0.2.7",
            "192.0.2.8",
            "192.0.2.9",
        ]
        await pilot.press("g")
        await pilot.pause()
        assert "group none" in text_of(app, "#flows-status") and len(rows(app)) == 5


def history_flow(bps: float, t: float) -> FlowRecord:
    return replace(WEB, bps=bps, last_seen=t)


async def test_enter_opens_detail_with_chart_process_and_events(tmp_path):
    events = (
        TcpEvent(T0 - 29, "connect", "10.0.0.1", 40000, "10.0.0.9", 443, ms=0.5, pid=100, comm="nginx"),
        TcpEvent(T0 - 5, "retransmit", "10.0.0.1", 40000, "10.0.0.9", 443),
    )
    other_event = TcpEvent(T0 - 4, "close", "10.0.0.1", 40001, "192.0.2.7", 443, ms=20.0)
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        # Six samples; in the fourth the flow is not among the top flows: a gap, not a 0.
        for i, bps in enumerate((1000.0, 2000.0, 3000.0, None, 5000.0, 9000.0)):
            flows = (DNS,) if bps is None else (replace(history_flow(bps, T0 + i), events=events), DNS)
            data = flows_data(flows, recent_events=(other_event,))
            await show(pilot, data, seq=i + 1, t=T0 - 6 + i)
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, FlowDetailScreen)
        chart = detail.query_one(RateChart)
        assert chart.points_drawn == 5
        assert [p.bps for p in detail.view.points] == [1000.0, 2000.0, 3000.0, 5000.0, 9000.0]
        text = detail.text()
        assert "tcp 10.0.0.1:40000 → 10.0.0.9:443  first seen egress on eth0" in text
        assert "pid 100  comm nginx  service web" in text
        assert "retransmit" in text and "connect" in text
        assert "192.0.2.7" not in text  # another connection's event is not this flow's
        assert text.index("retransmit") < text.index("connect ")  # newest first

        # New data reaches the open dialog.
        await show(pilot, flows_data((history_flow(7000.0, T0 + 7), DNS)), seq=7, t=T0 + 1)
        assert detail.query_one(RateChart).points_drawn == 6
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, FlowDetailScreen)


async def test_enter_on_a_group_sums_its_flows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data())
        await pilot.press("g", "enter")  # the nginx process group leads by bytes/s
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, FlowDetailScreen)
        assert [p.bps for p in detail.view.points] == [9100.0]
        text = detail.text()
        assert "process nginx [100]: 2 flows" in text
        assert "10.0.0.9:443" in text and "192.0.2.7:443" in text


async def test_counters_always_visible_and_alarm_while_growing(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data(), seq=1, t=NOW - 20)
        line = text_of(app, "#flows-counters")
        for word in ("evicted 0", "not recorded 0", "truncated 0", "TCP events lost 0 of 50"):
            assert word in line
        assert pane.alarms == []

        await show(pilot, flows_data(lost_events=7, update_failures=3), seq=2, t=NOW - 10)
        assert ("flows: TCP events lost 7 (+7)", "warning") in pane.alarms
        assert ("flows: not recorded 3 (+3)", "error") in pane.alarms
        assert "not recorded 3 ▲" in text_of(app, "#flows-counters")
        assert "TCP events lost 7" in screen_text(app).splitlines()[2]  # the header's what-is-wrong line

        # Still 7 and 3, 40 s after they last grew: shown, but no longer an alarm.
        await show(pilot, flows_data(lost_events=7, update_failures=3), seq=3, t=NOW + 31)
        assert pane.alarms == []
        assert "TCP events lost 7 of 57" in text_of(app, "#flows-counters")

        # The TCP tracepoints not attached: the line says so instead of a count.
        await show(
            pilot,
            flows_data(lost_events=None, events_total=None, tcp_events_error="no tracefs"),
            seq=4,
            t=NOW + 32,
        )
        assert "TCP events off: no tracefs" in text_of(app, "#flows-counters")


async def test_hostile_process_name_shows_literally(tmp_path):
    hostile = replace(WEB, comm=HOSTILE, service=HOSTILE)
    app = make_app(tmp_path)
    async with app.run_test(size=(200, 50)) as pilot:
        await show(
            pilot,
            flows_data(
                (hostile,),
                ifaces=(IfaceStatus(HOSTILE, None, None, HOSTILE),),
                lost_events=None,
                events_total=None,
                tcp_events_error=HOSTILE,
            ),
        )
        text = screen_text(app)
        assert MARKUP in text and "\\x1b]0;pwned" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowDetailScreen)
        text = screen_text(app)
        assert f"comm {MARKUP}" in text and "\\u202eevil" in text
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_renders_at_each_size_without_cutting_the_flow(tmp_path, size):
    v6 = flow(
        "2001:db8::1",
        443,
        "2001:db8::2",
        51000,
        bps=20000.0,
        pps=20.0,
        total=10_000,
        pid=7,
        comm="envoy",
        service="edge",
        direction="ingress",
    )
    app = make_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await show(pilot, flows_data((*FLOWS, v6)))
        screen = screen_text(app)
        assert "drops:" in screen and "evicted 0" in screen and "s sort bytes/s" in screen
        assert column_labels(app) == [
            "proto :port ⇄ remote",
            "B/s▼",
            "pkt/s",
            "total",
            "rtx",
            "conn",
            "process",
        ]
        # Every row has its remote side and both ports whole (local port ⇄ remote).
        table = rows(app)
        assert table[0][0] == "tcp :51000 ← [2001:db8::1]:443"
        visible = 5 if size == (80, 24) else 6
        assert len(table) == visible  # only the rows on screen are built
        for row, f in zip(table[1:], FLOWS[: visible - 1], strict=True):
            assert row[0] == f"{f.proto} :{f.sport} → {f.dst}:{f.dport}"
        for row in table[:visible]:
            assert row[0] in screen and row[-1] in screen


async def test_process_cell_carries_the_service_as_room_allows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data())
        # No service column at 80 columns: `comm · service`, else `comm [pid]` when it fits (13 here).
        assert [r[-1] for r in rows(app)] == [
            "nginx · web",
            "resolved",
            "nginx · web",
            "curl [300]",
            "curl · probe",
        ]


async def test_full_and_wide_layouts_have_every_column(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(280, 40)) as pilot:  # a grid pane about 138 wide
        await show(pilot, flows_data())
        assert column_labels(app) == [
            "state",
            "proto",
            "src:sport → dst:dport",
            "bytes/s▼",
            "pkts/s",
            "total",
            "retrans",
            "connect",
            "process",
            "service",
        ]
        first = rows(app)[0]
        assert first[:3] == ["live", "tcp", "10.0.0.1:40000 → 10.0.0.9:443"]
        assert first[3] == "8.8 KiB/s" and first[-2:] == ["nginx [100]", "web"]
        await pilot.press("g")
        await pilot.pause()
        assert column_labels(app) == [
            "process",
            "flows",
            "bytes/s▼",
            "pkts/s",
            "total",
            "retrans",
            "max conn",
        ]
        assert rows(app)[0] == ["nginx [100]", "2", "8.9 KiB/s", "11", "927.7 KiB", "3", "1.50ms"]
    app = make_app(tmp_path)
    async with app.run_test(size=(360, 40)) as pilot:  # about 178 wide: the interface too
        await show(pilot, flows_data())
        assert column_labels(app)[:2] == ["iface", "state"] and rows(app)[0][0] == "eth0"


async def test_unchanged_data_repaints_nothing_and_a_change_repaints_its_line(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data(), seq=1)
        table = app.query_one("#flows-table", LineTable)
        repainted = table.lines_repainted
        await show(pilot, flows_data(), seq=2)
        assert table.lines_repainted == repainted
        changed = replace(SLOW, pps=7.0)  # its rank by bytes/s does not change
        await show(pilot, flows_data((WEB, DNS, BULK, changed, LATE)), seq=3)
        assert table.lines_repainted == repainted + 1
        assert rows(app)[3][2] == "7"


async def test_cursor_follows_the_flow_and_pause_freezes_the_rows(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data(), seq=1)
        await pilot.press("down")  # DNS
        assert pane.selected_ident()[2:] == ("10.0.0.1", 53000, "10.0.0.53", 53)
        louder = replace(DNS, bps=99999.0)
        await show(pilot, flows_data((WEB, louder, BULK, SLOW, LATE)), seq=2)
        assert app.query_one("#flows-table", LineTable).cursor == 0  # DNS moved up; so did the cursor
        before = rows(app)
        await pilot.press("space")  # pause
        await show(pilot, flows_data((WEB,)), seq=3)
        assert rows(app) == before
        await pilot.press("s")  # the view still re-sorts what is on screen
        await pilot.pause()
        assert len(rows(app)) == 5 and "10.0.0.53:53" in rows(app)[0][0]
        await pilot.press("space")
        await pilot.pause()
        assert len(rows(app)) == 1


async def test_the_status_line_says_the_cursor_follows_the_operators_row_until_home(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data(), seq=1)
        # unattended (a wall display): the top of the order, and the status says nothing of it
        assert not pane.attended and "cursor follows" not in text_of(app, "#flows-status")
        await show(pilot, flows_data((WEB, replace(DNS, bps=99999.0), BULK, SLOW, LATE)), seq=2)
        assert "cursor follows" not in text_of(app, "#flows-status")
        await pilot.press("down")
        await pilot.pause()
        status = text_of(app, "#flows-status")
        assert status.startswith("cursor follows your row home top"), status
        assert "s sort" in status and "/ filter" in status  # said beside the keys, not instead
        # new data keeps saying it while the cursor stays on its row
        await show(pilot, flows_data(), seq=3)
        assert pane.selected_ident()[2:] == ("10.0.0.1", 40000, "10.0.0.9", 443)  # WEB, now on top
        assert "cursor follows your row home top" in text_of(app, "#flows-status")
        await pilot.press("home")
        await pilot.pause()
        assert app.query_one("#flows-table", LineTable).cursor == 0 and not pane.attended
        assert "cursor follows" not in text_of(app, "#flows-status")
        await show(pilot, flows_data((WEB, replace(DNS, bps=99999.0), BULK, SLOW, LATE)), seq=4)
        assert app.query_one("#flows-table", LineTable).cursor == 0  # the top again, whatever leads
        assert "cursor follows" not in text_of(app, "#flows-status")


async def test_keys_belong_to_the_focused_pane(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show(pilot, flows_data())
        await pilot.press("2", "s", "g", "slash")
        await pilot.pause()
        assert pane.sort == "bps" and pane.grouping == "none"
        assert not isinstance(app.screen, FlowFilterScreen)


async def test_demo_recording(tmp_path):
    runtime = ReplayRuntime.from_file(settings(tmp_path), str(DATA / "demo.rec"))
    runtime.replay.paused = True
    runtime.replay.seek(len(runtime.replay) - 1)
    from ebpftop.tui.app import EbpftopApp

    app = EbpftopApp(runtime, clock=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        pane = app.query_one(FlowsPane)
        assert not pane.has_class("-nodata")
        first = rows(app)[0]
        assert "10.200.0.10:41822" in first[0] and first[1] == "4.8M" and first[-1] == "haproxy"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowDetailScreen)
        assert app.screen.query_one(RateChart).points_drawn >= 10


async def test_tall_pane_lists_the_latest_tcp_events(tmp_path):
    recent = (
        TcpEvent(T0 - 2, "connect", "10.0.0.1", 40000, "10.0.0.9", 443, ms=0.5, pid=100, comm="\x1b[2Jx"),
        TcpEvent(T0 - 1, "retransmit", "10.0.0.1", 40002, "192.0.2.8", 8080),
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show(pilot, flows_data(recent_events=recent))
        assert pane.has_class("-tall")
        lines = text_of(app, "#flows-events").splitlines()
        assert lines[0] == "latest TCP events"
        assert "retransmit" in lines[1] and "192.0.2.8:8080" in lines[1]  # newest first
        assert "connect 0.50ms" in lines[2] and "\\x1b[2Jx [100]" in lines[2]
        assert_nothing_raw_reaches_the_terminal(terminal_bytes(app))
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:  # no room: the table keeps every row
        pane = await show(pilot, flows_data(recent_events=recent))
        assert not pane.has_class("-tall") and "latest TCP events" not in screen_text(app)


async def test_view_keys_work_in_kiosk_and_a_theme_change_redraws_the_cells(tmp_path):
    app = make_app(tmp_path, kiosk=True)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = await show(pilot, flows_data())
        warning = app.get_css_variables()["warning"]
        await pilot.press("T")  # next theme
        await pilot.pause()
        table = app.query_one("#flows-table", LineTable)
        cell = next(seg for seg in table.render_line(4) if seg.text.strip() == "40")  # SLOW's retransmits
        now_warning = app.get_css_variables()["warning"]
        assert cell.style.color.triplet.hex.upper() == now_warning.upper() != warning.upper()
        await pilot.press("s", "g")  # sorting and grouping change only the view: allowed read-only
        await pilot.pause()
        assert pane.sort == "pps" and pane.grouping == "process"


async def test_fifty_thousand_flows_build_only_the_rows_on_screen(tmp_path):
    """Drawing follows the window, not the flows: a snapshot of 50k flows builds as many
    rows as fit, and an unattended pane shows the top of its order."""
    many = tuple(
        flow("10.0.0.1", 40000, "10.255.0.1", 1024 + i, bps=float(i), pps=1.0, total=64, proto="udp")
        for i in range(50_000)
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        await show(pilot, flows_data(many), seq=1)
        table = app.query_one("#flows-table", LineTable)
        built, repainted = table.rows_built, table.lines_repainted
        # The next second every flow's rate has changed.
        changed = tuple(replace(f, bps=f.bps + 1) for f in many)
        await show(pilot, flows_data(changed), seq=2)
        assert 5 < table.window < 50
        assert table.rows_built - built == table.window
        assert table.lines_repainted - repainted <= table.window
        assert table.top == 0 and table.cursor == 0
        assert rows(app)[0][0] == "udp :40000 → 10.255.0.1:51023"  # flow 49999, the busiest


async def test_a_folded_pane_draws_nothing_until_it_is_shown(tmp_path):
    """At 80 columns the unfocused panes are folded to their frame and health line: data
    for them builds no row until the operator opens one."""
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # Rules gets the room; Flows is folded
        await pilot.pause()
        table = app.query_one("#flows-table", LineTable)
        await show(pilot, flows_data(), seq=1)
        await show(pilot, flows_data(), seq=2)
        pane = app.query_one(FlowsPane)
        assert pane.records == [] and table.rows_built == 0  # not even sorted
        assert "OK" in str(pane.query_one(".health", Static).render())  # the health line is drawn
        await pilot.press("1")
        await pilot.pause()
        await pilot.pause()
        assert table.rows_built > 0 and rows(app)[0][0].startswith("tcp")


def ended_conn(i: int, dport: int, *, comm: str, bps: float) -> FlowRecord:
    return replace(
        flow("10.0.0.1", 50000 + i, "10.0.0.80", dport, bps=bps, pps=1.0, total=2000, pid=900 + i, comm=comm),
        closed=True,
    )


async def test_the_first_screen_folds_ended_connections_and_keeps_live_ones_on_top(tmp_path):
    """One connection per request: hundreds of ended connections, busier this tick than the
    live ones. They fold per owner + addresses + port, and take at most half the screen."""
    ended = tuple(ended_conn(i, 8000 + i % 20, comm=f"client{i % 20}", bps=20_000.0 + i) for i in range(400))
    web = replace(
        WEB,
        paths=(
            FlowPath("veth-c", "ingress", True, 30, 40_000, 7000.0, 7.0),
            FlowPath("veth-lb", "egress", True, 30, 40_000, 7000.0, 7.0),
            FlowPath("veth-lb", "ingress", False, 20, 10_000, 2000.0, 3.0),
        ),
    )
    app = make_app(tmp_path)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = await show(pilot, flows_data((*ended, web, DNS, BULK, SLOW, LATE)))
        table = app.query_one("#flows-table", LineTable)
        shown = rows(app)  # the compact layout (a 2x2 grid): the flow cell first
        folds = [r for r in shown if " ×" in r[0]]
        # the busiest rows are folds, but they take half the screen until the live rows
        # are all on it; then the rest of the screen is theirs again
        half = table.window // 2
        assert len(shown) == table.window > 2 * 5 and len(folds) == table.window - 5, shown
        assert all(" ×" in r[0] for r in shown[:half]) and all(
            " ×" not in r[0] for r in shown[half : half + 5]
        )
        assert folds[0][0] == "tcp ×20 → 10.0.0.80:8019"
        assert folds[0][-1] == "client19"
        live = [r for r in shown if " ×" not in r[0]]
        assert [r[0] for r in live[:3]] == [
            "tcp :40000 → 10.0.0.9:443",
            "udp :53000 → 10.0.0.53:53",
            "tcp :40001 → 192.0.2.7:443",
        ]
        assert len(pane.records) == 20 + 5  # 400 connections, 20 folds
        # Enter on a fold: its connections, each closed, on its interface
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, FlowDetailScreen)
        text = detail.text()
        assert "20 ended connections of client19" in text and "closed  on eth0" in text
        assert len(detail.view.members) == 20
        await pilot.press("escape")
        await pilot.pause()
        # Enter on the live connection: the hooks that saw it, with what each counted
        pane.action_cursor(shown.index(live[0]))
        await pilot.press("enter")
        await pilot.pause()
        text = app.screen.text()
        assert "seen on" in text
        hooks = [line for line in text.splitlines() if line.startswith(("veth-c", "veth-lb"))]
        assert len(hooks) == 3 and "10.0.0.9 → 10.0.0.1" in hooks[2], hooks


async def test_a_lone_ended_connection_is_marked_in_the_compact_layout(tmp_path):
    gone = replace(SLOW, closed=True)
    quiet = replace(LATE, last_seen=NOW - 60)  # no packet for a minute: ended too
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await show(pilot, flows_data((WEB, gone, quiet)))
        assert [r[0] for r in rows(app)] == [
            "tcp :40000 → 10.0.0.9:443",
            "tcp ✕ :40002 → 192.0.2.8:8080",
            "tcp ✕ :40003 → 192.0.2.9:80",
        ]
