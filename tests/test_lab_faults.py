"""The lab's faults beyond the knobs, without a lab: `inject <variant> down|up` and
`inject flood on|off|rate=`, parsed whole before anything changes; the record of a
service taken down on purpose; the header's alarm for a server its controller stopped."""

from __future__ import annotations

import pytest

from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.rollout.model import Backend, RolloutData, RolloutState, rollout_alarms
from ebpftop.core.model import Health, HealthState, Snapshot
from ebpftop.lab import faults
from ebpftop.lab.errors import LabError


def test_service_and_flood_terms_parse_to_faults():
    assert faults.parse("stable", ["down"]) == faults.Fault("stable", "down")
    assert faults.parse("canary", ["up"]) == faults.Fault("canary", "up")
    assert faults.parse("flood", ["on"]) == faults.Fault("flood", "on", faults.FLOOD_DEFAULT_BPS)
    assert faults.parse("flood", ["off"]) == faults.Fault("flood", "off", 0)
    assert faults.parse("flood", ["rate=5MB/s"]) == faults.Fault("flood", "on", 5_000_000)
    assert faults.parse("flood", ["rate=500KB/s"]) == faults.Fault("flood", "on", 500_000)
    assert faults.parse("flood", ["rate=2MB/s"]).describe() == "flood on at 2 MB/s"


def test_knob_terms_are_not_faults():
    assert faults.is_fault("stable", ["down"]) and faults.is_fault("flood", ["bogus"])
    assert not faults.is_fault("canary", ["latency=300ms"])
    assert not faults.is_fault("canary", ["reset"])
    assert not faults.is_fault("canary", ["down", "cpu=on"])  # down stands alone: the knobs refuse it


@pytest.mark.parametrize(
    ("target", "terms", "words"),
    [
        ("flood", ["rate=99MB/s"], ("bad flood rate", "50MB/s")),
        ("flood", ["rate=1kb/s"], ("bad flood rate",)),
        ("flood", ["rate=fast"], ("bad flood term", "rate=")),
        ("flood", ["on", "off"], ("flood takes one term",)),
        ("flood", ["down"], ("bad flood term",)),
        ("stable", ["down", "up"], ("stands alone",)),
        ("blue", ["down"], ("unknown target", "stable, canary, flood")),
    ],
)
def test_bad_fault_terms_are_refused_naming_what_is_allowed(target, terms, words):
    with pytest.raises(LabError) as err:
        faults.parse(target, terms)
    assert err.value.part == "inject"
    assert all(w in str(err.value) for w in words), str(err.value)


def test_cli_refuses_a_bad_flood_term_before_looking_for_the_lab(capsys):
    assert cli_main(["lab", "inject", "flood", "rate=1GB/s", "--instance", "zz"]) == 2
    err = capsys.readouterr().err
    assert "bad flood" in err and "rate=<0.01-50MB/s" in err


def test_cli_says_the_lab_is_not_up_for_a_good_fault(capsys, tmp_path, monkeypatch):
    from ebpftop.lab import manager

    monkeypatch.setattr(manager, "Layout", _layout_in(tmp_path, manager.Layout))
    assert cli_main(["lab", "inject", "stable", "down", "--instance", "zz"]) == 2
    assert "the lab is not up" in capsys.readouterr().err


def _layout_in(tmp_path, layout):
    """manager.Layout with its state dir under tmp_path (no lab of this machine is read)."""
    from dataclasses import replace

    return lambda cfg: layout(replace(cfg, state_dir=str(tmp_path)))


def test_a_service_taken_down_is_remembered_until_it_is_up(tmp_path):
    tmp = str(tmp_path)
    assert faults.down_services(tmp) == set() and faults.down_services(None) == set()
    faults.mark_down(tmp, "stable", True)
    faults.mark_down(tmp, "canary", True)
    faults.mark_down(tmp, "canary", False)
    assert faults.down_services(tmp) == {"stable"}
    (tmp_path / "faults.json").write_text('{"down": ["stable", "rm -rf", 3]}')
    assert faults.down_services(tmp) == {"stable"}  # only known variants
    (tmp_path / "faults.json").write_text("not json")
    assert faults.down_services(tmp) == set()


def rollout(*backends: Backend) -> Snapshot:
    state = RolloutState("checkout", "haproxy", "/run/x.sock", "stable", "canary", 100.0, 0.0, "canary only")
    data = RolloutData((RolloutState(**{**state.__dict__, "backends": backends}),))
    return Snapshot("rollout", 1, 0.0, Health(HealthState.OK, "", "", 0.0, 0), data)


def test_a_server_whose_health_checks_fail_is_an_alarm_and_maintenance_is_not():
    down = rollout(Backend("stable", "stable", 50, "stopped", "198.18.0.31:8000"))
    found = [(a.severity, a.kind, a.text) for a in rollout_alarms(down, ())]
    assert found == [
        ("error", "backend_down", "checkout stable down: haproxy server stable stopped (health checks fail)")
    ]
    on_purpose = rollout(
        Backend("stable", "stable", 50, "stopped, maint", "a"),
        Backend("canary", "canary", 50, "running", "b"),
    )
    assert list(rollout_alarms(on_purpose, ())) == []
