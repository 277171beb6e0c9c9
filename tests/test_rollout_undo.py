"""Undoing a rollback, and a rollback that HAProxy silently undoes, on the lab's real
HAProxy: `R` then `U` in the dashboard sets back exactly the weights the rollback
changed, each through the gate and audited; a weight set back behind ebpftop's back (as
a reload does) raises the "rollback of X reverted" alarm in the header and in
`snapshot --json`, with one audit entry; and `lab up` after HAProxy died brings the
runtime socket back at the same path, so the rollout source reconnects.

One private lab instance ("ud") serves the module; the tests that kill HAProxy are last,
and the very last replaces the lab's HAProxy with one in master-worker mode (as systemd
runs it) to reload it for real, then brings the lab's own back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time

import psutil
import pytest
from app_support import screen_text, settings
from conftest import need, need_root
from test_rollout_tui import wait_for
from textual.widgets import Static

from ebpftop.actions.rollback import run_rollback
from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.rollout.base import ControllerError
from ebpftop.collectors.rollout.collector import RolloutCollector, controller_from
from ebpftop.collectors.rollout.memory import memory_path
from ebpftop.collectors.rollout.runtime_api import RuntimeAPI, RuntimeAPIError
from ebpftop.core.audit import verify
from ebpftop.core.runtime import Runtime, audited_gate
from ebpftop.lab import manager, procs
from ebpftop.lab import state as statefile
from ebpftop.lab.layout import LabConfig, Layout
from ebpftop.tui.app import EbpftopApp
from ebpftop.tui.screens.confirm import ConfirmScreen

pytestmark = pytest.mark.integration

CFG = LabConfig(name="ud", subnet="198.18.226.0/24", prometheus_port=19226, rate=20, weights=(90, 10))
# Not the configured 90/10: undo must restore what was there, not what haproxy.cfg says.
STABLE, CANARY = 83, 17


@pytest.fixture(scope="module")
def lab():
    need_root()
    for binary in ("haproxy", "prometheus", "ip"):
        need(shutil.which(binary) is not None, f"{binary} not installed (make setup)")
    try:
        manager.up(CFG)
        ep = manager.endpoints(CFG)
        assert ep is not None
        yield ep
    finally:
        manager.down(CFG)


@pytest.fixture
def api(lab) -> RuntimeAPI:
    api = RuntimeAPI(lab.haproxy_socket)
    for server, weight in (("stable", STABLE), ("canary", CANARY)):
        api.set_state("be_app", server, "ready")
        api.set_weight("be_app", server, weight)
    return api


def entries(tmp_path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def confirm_by_typing(app, pilot, service: str) -> str:
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    shown = str(app.screen.query_one("#confirm-description", Static).render())
    await pilot.press(*service, "enter")
    await app.workers.wait_for_complete()
    await pilot.pause()
    return shown


async def test_R_then_U_restores_exactly_the_prior_weights_both_audited(tmp_path, lab, api):
    s = manager.wire_settings(settings(tmp_path, rollout_interval=0.3), lab)
    app = EbpftopApp(Runtime(s, collectors=[RolloutCollector(s)]))
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await wait_for(pilot, lambda: app.runtime.store.latest("rollout") is not None)
        await pilot.press("U")  # nothing rolled back yet: said, nothing asked, nothing written
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen) and entries(tmp_path) == []
        assert any("nothing to undo" in n.message for n in app._notifications)

        await pilot.press("R")
        await confirm_by_typing(app, pilot, "checkout")
        assert api.weights("be_app") == {"stable": STABLE, "canary": 0}

        await pilot.press("U")
        shown = await confirm_by_typing(app, pilot, "checkout")
        # The dialog said exactly what it would set, where.
        assert f"Will send to haproxy at runtime API {lab.haproxy_socket}, backend be_app" in shown
        assert f"set server be_app/canary weight {CANARY}" in shown
        assert "stable" not in shown.split("Will send")[1].split("Evidence")[0]  # stable is untouched
        assert api.weights("be_app") == {"stable": STABLE, "canary": CANARY}
        assert any(
            n.message.startswith("undo of the rollback of checkout: undone: canary weight 17")
            for n in app._notifications
        ), [n.message for n in app._notifications]

        await pilot.press("U")  # undone: nothing on record any more
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)

    log = entries(tmp_path)
    assert [(e["event"], e["action"]["kind"], e["ok"]) for e in log] == [
        ("intent", "rollout.rollback", None),
        ("result", "rollout.rollback", True),
        ("intent", "rollout.undo", None),
        ("result", "rollout.undo", True),
    ]
    assert f"before: canary weight {CANARY} (undo restores it)" in log[1]["message"]
    assert [r["body"] for r in log[2]["action"]["params"]["plan"]["requests"]] == [
        f"set server be_app/canary weight {CANARY}"
    ]
    assert log[3]["ref"] == log[2]["seq"]
    assert verify(tmp_path / "audit.jsonl", tmp_path / "audit.key").ok


async def test_drain_mode_undo_also_sets_the_admin_state_back(tmp_path, lab, api):
    s = manager.wire_settings(settings(tmp_path, rollout_haproxy_mode="drain"), lab)
    ctl = controller_from(s)
    gate = audited_gate(s)

    async def yes(_action):
        return True

    result = await run_rollback(gate, ctl, "checkout", None, yes)
    assert result.ok, result.message
    canary = next(x for x in api.servers_state("be_app") if x.name == "canary")
    assert (canary.weight, canary.admin) == (0, "drain")
    plan = ctl.plan_undo()
    assert [r.body for r in plan.requests] == [
        f"set server be_app/canary weight {CANARY}",
        "set server be_app/canary state ready",
    ]
    assert "undone" in await ctl.undo(plan)
    canary = next(x for x in api.servers_state("be_app") if x.name == "canary")
    assert (canary.weight, canary.admin) == (CANARY, "ready")
    with pytest.raises(ControllerError, match="nothing to undo"):
        ctl.plan_undo()


async def test_the_undo_itself_is_not_taken_for_a_reverted_rollback(tmp_path, lab, api, monkeypatch):
    s = manager.wire_settings(settings(tmp_path), lab)
    ctl = controller_from(s)

    async def yes(_action):
        return True

    assert (await run_rollback(audited_gate(s), ctl, "checkout", None, yes)).ok
    send, seen = ctl._send, []

    async def send_then_read(plan):
        done = await send(plan)
        seen.append(await ctl.state())  # the rollout source reading at the worst moment
        return done

    monkeypatch.setattr(ctl, "_send", send_then_read)
    assert "undone" in await ctl.undo(ctl.plan_undo())
    assert seen[0].canary_weight > 0 and seen[0].reverted_since is None
    assert [e for e in entries(tmp_path) if e["event"] == "observed"] == []


async def test_kiosk_refuses_undo_and_audits_the_refusal(tmp_path, lab, api):
    s = manager.wire_settings(settings(tmp_path, kiosk=True), lab)
    app = EbpftopApp(Runtime(s, collectors=[RolloutCollector(s)]))
    async with app.run_test(size=(160, 48), notifications=True) as pilot:
        await pilot.press("U")  # hidden and inert
        await pilot.pause()
        assert entries(tmp_path) == []
        app.action_undo_rollback()  # called anyway: refused, audited
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert [(e["event"], e["action"]["kind"]) for e in entries(tmp_path)] == [("refused", "rollout.undo")]
    assert api.weights("be_app") == {"stable": STABLE, "canary": CANARY}


async def test_a_reverted_rollback_raises_an_alarm_on_screen_in_json_and_once_in_the_audit_log(
    tmp_path, lab, api, capsys
):
    s = manager.wire_settings(settings(tmp_path, rollout_interval=0.3), lab)

    async def yes(_action):
        return True

    result = await run_rollback(audited_gate(s), controller_from(s), "checkout", None, yes)
    assert result.ok, result.message
    assert memory_path(s.audit_key).exists()
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[audit]\nlog = "{s.audit_log}"\nkey = "{s.audit_key}"\n'
        f'[rollout]\ncontroller = "haproxy"\nhaproxy_socket = "{lab.haproxy_socket}"\nservice = "checkout"\n'
    )
    cfg.chmod(0o600)

    async def snapshot_alarms() -> list[dict]:
        argv = ["--config", str(cfg), "snapshot", "--json", "--source", "rollout", "--duration", "1"]
        code = await asyncio.to_thread(cli_main, argv)  # its own event loop, as from a shell
        out = capsys.readouterr()
        assert code == 0, out.err
        return [a for a in json.loads(out.out)["alarms"] if a["kind"] == "rollback_reverted"]

    assert await snapshot_alarms() == []  # rolled back and still so: nothing to say

    api.set_weight("be_app", "canary", 10)  # what a reload does: the configured weight is back
    before = time.time()
    [alarm] = await snapshot_alarms()
    assert alarm["severity"] == "error" and alarm["source"] == "rollout"
    assert alarm["text"].startswith("rollback of checkout reverted: canary back at 11% since ")
    assert before - 1 <= alarm["detail"]["reverted_since"] <= time.time()
    assert alarm["detail"]["undo"] == f"canary weight {CANARY}"
    assert (await snapshot_alarms())[0]["detail"]["reverted_since"] == alarm["detail"]["reverted_since"]

    observed = [e for e in entries(tmp_path) if e["event"] == "observed"]
    assert len(observed) == 1  # first seen once, however many times it is seen since
    assert observed[0]["action"]["kind"] == "rollout.reverted"
    assert observed[0]["message"].startswith("rollback of checkout reverted: canary back at 11%")
    assert verify(tmp_path / "audit.jsonl", tmp_path / "audit.key").ok

    # The dashboard shows it in the header, first screen, no key pressed.
    app = EbpftopApp(Runtime(s, collectors=[RolloutCollector(s)]))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(
            pilot,
            lambda: "rollback of checkout reverted: canary back at 11%" in screen_text(app),
            detail=lambda: screen_text(app),
        )
    assert len([e for e in entries(tmp_path) if e["event"] == "observed"]) == 1


def test_the_cli_verb_undoes_too_with_a_dry_run_first(tmp_path, lab, api, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[audit]\nlog = "{tmp_path}/audit.jsonl"\nkey = "{tmp_path}/audit.key"\n'
        f'[rollout]\ncontroller = "haproxy"\nhaproxy_socket = "{lab.haproxy_socket}"\n'
    )
    cfg.chmod(0o600)
    base = ["--config", str(cfg), "rollback", "default"]
    assert cli_main([*base, "--undo", "--dry-run"]) == 1
    assert "nothing to undo" in capsys.readouterr().err
    assert cli_main([*base, "--yes"]) == 0
    assert api.weights("be_app") == {"stable": STABLE, "canary": 0}
    capsys.readouterr()
    assert cli_main([*base, "--undo", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing is sent" in out and f"set server be_app/canary weight {CANARY}" in out
    assert api.weights("be_app") == {"stable": STABLE, "canary": 0}
    assert cli_main([*base, "--undo", "--yes"]) == 0
    assert "undone: canary weight 17" in capsys.readouterr().out
    assert api.weights("be_app") == {"stable": STABLE, "canary": CANARY}
    assert [(e["event"], e["action"]["kind"]) for e in entries(tmp_path)] == [
        ("intent", "rollout.rollback"),
        ("result", "rollout.rollback"),
        ("intent", "rollout.undo"),
        ("result", "rollout.undo"),
    ]


def haproxy_pid() -> int:
    st = statefile.load(Layout(CFG).state_file)
    assert st is not None
    rec = st.proc("haproxy")
    assert rec is not None
    return rec.pid


async def test_lab_up_after_haproxy_died_keeps_the_socket_and_the_collector_reconnects(tmp_path, lab, api):
    s = manager.wire_settings(settings(tmp_path), lab)
    collector = RolloutCollector(s)
    await collector.start()
    assert (await collector.collect()).services[0].phase == "progressing"
    before = lab.haproxy_socket
    assert not before.startswith("/tmp")  # not in the temp dir a rebuilt lab replaces

    pid = haproxy_pid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ControllerError):
        await collector.collect()
    assert not manager.status(CFG).healthy

    manager.up(CFG)
    ep = manager.endpoints(CFG)
    assert ep is not None and ep.haproxy_socket == before
    assert haproxy_pid() != pid
    state = (await collector.collect()).services[0]  # the same collector, no restart
    assert (state.stable_weight, state.canary_weight) == (90.0, 10.0)
    await collector.close()


async def test_a_real_haproxy_reload_undoes_the_rollback_and_the_alarm_says_so(tmp_path, lab, capsys):
    layout = Layout(CFG)
    st = statefile.load(layout.state_file)
    assert st is not None and st.tmpdir
    conf = os.path.join(st.tmpdir, "haproxy.cfg")  # the lab's own: weights 90/10, the same socket
    # The lab runs HAProxy as one process (-db); run it from the same file the way systemd
    # does (master-worker), where a reload is SIGUSR2 to the master: a new worker reads
    # haproxy.cfg again and the old one leaves.
    procs.kill_pid(haproxy_pid())
    argv = [shutil.which(CFG.haproxy_bin) or CFG.haproxy_bin, "-W", "-db", "-f", conf]
    master = procs.start(
        "haproxy", argv, log=str(tmp_path / "haproxy.log"), netns=layout.netns("lb"), ip_bin=CFG.ip_bin
    )
    ours = [psutil.Process(master.pid)]  # and every worker it forks: all killed at the end

    def workers() -> set[int]:
        kids = ours[0].children()
        ours.extend(kids)
        return {p.pid for p in kids}

    api = RuntimeAPI(lab.haproxy_socket)

    def serving() -> bool:
        try:
            return all(x.op_state == "running" for x in api.servers_state("be_app"))
        except RuntimeAPIError:
            return False

    try:
        procs.wait_ready(master, serving, timeout=30, what=f"runtime API {lab.haproxy_socket}")
        for server, weight in (("stable", STABLE), ("canary", CANARY)):
            api.set_weight("be_app", server, weight)
        s = manager.wire_settings(settings(tmp_path, rollout_interval=0.3), lab)

        async def yes(_action):
            return True

        result = await run_rollback(audited_gate(s), controller_from(s), "checkout", None, yes)
        assert result.ok, result.message
        assert api.weights("be_app") == {"stable": STABLE, "canary": 0}

        app = EbpftopApp(Runtime(s, collectors=[RolloutCollector(s)]))

        def rollout():
            snap = app.runtime.store.latest("rollout")
            return snap.data.services[0] if snap is not None and snap.data is not None else None

        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: rollout() is not None and rollout().phase == "rolled back")
            assert "reverted" not in screen_text(app)
            old = workers()
            assert len(old) == 1

            before = time.time()
            os.kill(master.pid, signal.SIGUSR2)  # what `systemctl reload haproxy` sends
            # The same collector, reading the same socket path, sees the new worker's weights.
            await wait_for(
                pilot,
                lambda: "rollback of checkout reverted: canary back at 10% since " in screen_text(app),
                tries=600,
                detail=lambda: f"{rollout()}\n{screen_text(app)}",
            )
            state = rollout()
            assert (state.stable_weight, state.canary_weight) == (90.0, 10.0)
            assert before - 1 <= state.reverted_since <= time.time()
            assert state.undo == f"canary weight {CANARY}"
        assert api.weights("be_app") == {"stable": 90, "canary": 10}  # haproxy.cfg's, not ours
        assert workers() - old, "no new worker: HAProxy did not reload"

        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[audit]\nlog = "{s.audit_log}"\nkey = "{s.audit_key}"\n'
            f'[rollout]\ncontroller = "haproxy"\nhaproxy_socket = "{lab.haproxy_socket}"\n'
            'service = "checkout"\n'
        )
        cfg.chmod(0o600)
        argv = ["--config", str(cfg), "snapshot", "--json", "--source", "rollout", "--duration", "1"]
        capsys.readouterr()
        code = await asyncio.to_thread(cli_main, argv)
        out = capsys.readouterr()
        assert code == 0, out.err
        [alarm] = [a for a in json.loads(out.out)["alarms"] if a["kind"] == "rollback_reverted"]
        assert alarm["text"].startswith("rollback of checkout reverted: canary back at 10% since ")
        assert alarm["detail"]["reverted_since"] == state.reverted_since
        assert alarm["detail"]["undo"] == f"canary weight {CANARY}"

        observed = [e for e in entries(tmp_path) if e["event"] == "observed"]
        assert len(observed) == 1
        assert observed[0]["action"]["kind"] == "rollout.reverted"
        assert observed[0]["message"].startswith("rollback of checkout reverted: canary back at 10%")
        assert "HAProxy reloaded" in observed[0]["message"]
        assert verify(tmp_path / "audit.jsonl", tmp_path / "audit.key").ok
    finally:
        workers()
        procs.stop(master)  # the master stops its workers; whatever is left is killed
        for p in ours:
            with contextlib.suppress(psutil.Error):
                p.kill()
                p.wait(5)
        manager.up(CFG)  # the lab's own HAProxy again (lab up restarts a part that died)
