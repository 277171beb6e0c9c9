"""The command line as a whole: --version, a closed stdout, and --lab for every verb."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from ebpftop.cli import options
from ebpftop.cli.main import EXIT_BROKEN_PIPE, build_parser, main
from ebpftop.core.settings import Settings
from ebpftop.lab import manager
from ebpftop.lab import state as statefile
from ebpftop.lab.layout import LabConfig, Layout

DEMO = Path(__file__).parent / "data" / "demo.rec"
EMPTY = str(Path(__file__).parent / "data" / "empty.toml")  # no settings: only --lab and the flags count


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SUDO_", "XDG_"))}
    env["HOME"] = str(tmp_path / "home")
    return env


def cli(tmp_path: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", *argv],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        text=True,
        timeout=120,
        **kwargs,
    )


# --- --version ---------------------------------------------------------------------------


def test_version_prints_the_package_version_and_exits_0(tmp_path):
    proc = cli(tmp_path, "--version", capture_output=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"ebpftop {metadata.version('ebpftop')}\n", "")


# --- a reader that went away -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "--json"],
        ["--help-config"],
        ["replay", str(DEMO), "--summary"],
        ["audit", "show", "AUDIT"],
    ],
)
def test_a_closed_stdout_ends_quietly_with_141(tmp_path, argv):
    """`ebpftop doctor --json | head -c 10`, made deterministic: the reader is gone
    before the first write."""
    audit_log = tmp_path / "audit.jsonl"
    audit_log.write_text("\n".join(["not an entry"] * 5000) + "\n")  # more than a pipe holds
    argv = [str(audit_log) if a == "AUDIT" else a for a in argv]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = cli(tmp_path, *argv, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert "BrokenPipeError" not in proc.stderr
    assert proc.returncode == EXIT_BROKEN_PIPE == 141


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch, capsys):
    from ebpftop.cli.commands import doctor

    def boom(args):
        raise BrokenPipeError(32, "a socket's")

    monkeypatch.setattr(doctor, "run", boom)
    with pytest.raises(BrokenPipeError):
        main(["doctor"])


# --- --lab ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_state(cfg: LabConfig, tmpdir: Path) -> LabConfig:
    """Write the state file `ebpftop lab up` writes for `cfg` (nothing is started)."""
    tmpdir.mkdir()
    st = statefile.LabState(
        name=cfg.name,
        config=manager._config_dict(cfg),
        tmpdir=str(tmpdir),
        namespaces=Layout(cfg).namespaces,
        links=Layout(cfg).links,
        complete=True,
        started=time.time(),
    )
    statefile.save(Layout(cfg).state_file, st)
    return cfg


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A lab state file as `ebpftop lab up` writes it, on a port where nothing listens."""
    cfg = lab_state(
        LabConfig(state_dir=str(tmp_path / "lab"), prometheus_port=free_port()), tmp_path / "labtmp"
    )
    monkeypatch.setattr(options, "LAB_CONFIG", cfg)
    for var in [v for v in os.environ if v.startswith("EBPFTOP_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cfg


def test_with_lab_points_the_settings_at_the_running_lab(lab):
    s = options.with_lab(Settings(lab=True), bring_up=False)
    layout = Layout(lab)
    assert s.prometheus_url == f"http://127.0.0.1:{lab.prometheus_port}"
    assert s.ifaces == tuple(layout.veth(p) for p in ("client", "lb", "stable", "canary"))
    assert (s.rollout_controller, s.rollout_haproxy_canary, s.rollout_haproxy_stable) == (
        "haproxy",
        ("canary",),
        ("stable",),
    )
    # Beside the state file, not in the temp dir a rebuilt lab replaces.
    assert s.rollout_haproxy_socket == layout.haproxy_socket == f"{lab.state_dir}/haproxy.sock"


def test_with_lab_brings_the_lab_up_only_when_asked(lab, monkeypatch):
    ups = []
    monkeypatch.setattr(manager, "up", lambda config, say: ups.append(config))
    assert options.with_lab(Settings(lab=True), bring_up=True).rollout_controller == "haproxy"
    assert ups == [lab]
    options.with_lab(Settings(lab=True), bring_up=False)
    assert ups == [lab]


def test_snapshot_with_lab_asks_the_labs_prometheus(lab, tmp_path, capsys):
    code = main(["--config", EMPTY, "--lab", "snapshot", "--source", "canary", "--json", "--duration", "0.2"])
    out = capsys.readouterr()
    health = json.loads(out.out)["sources"]["canary"]["health"]
    assert "not configured" not in health["message"], health
    assert "cannot connect" in health["message"] and code == 1  # nothing listens on the lab's port here


def test_doctor_and_rollback_with_lab_use_the_same_wiring(lab, capsys):
    main(["--config", EMPTY, "--lab", "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert f"127.0.0.1:{lab.prometheus_port}" in checks["prometheus"]["detail"]
    assert main(["--config", EMPTY, "--lab", "rollback", "checkout", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "set server be_app/canary weight 0" in out


def test_lab_verbs_without_a_running_lab_exit_2_and_say_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(options, "LAB_CONFIG", LabConfig(state_dir=str(tmp_path / "nolab")))
    monkeypatch.setenv("HOME", str(tmp_path))
    for argv in (["snapshot", "--json"], ["doctor"], ["rollback", "checkout", "--dry-run"]):
        with pytest.raises(SystemExit) as exc:
            main(["--config", EMPTY, "--lab", *argv])
        assert exc.value.code == 2
        assert "--lab: the lab is not up (run `ebpftop lab up`" in capsys.readouterr().err
    # a verb the lab changes nothing for runs without it
    assert main(["--config", EMPTY, "--lab", "replay", str(DEMO), "--summary"]) == 0


# --- a lab instance other than the default one ---------------------------------------------


def test_lab_instance_wires_the_named_running_instance_and_brings_nothing_up(lab, tmp_path, monkeypatch):
    other = lab_state(
        LabConfig(name="x1", state_dir=lab.state_dir, subnet="198.18.99.0/24", prometheus_port=free_port()),
        tmp_path / "x1tmp",
    )
    ups = []
    monkeypatch.setattr(manager, "up", lambda config, say: ups.append(config))
    args = build_parser().parse_args(["--config", EMPTY, "--lab-instance", "x1"])
    s = options.load_or_exit(args, lab=options.LAB_UP)  # as the dashboard asks
    assert ups == []  # its subnet and ports were chosen at its `lab up`: used, not brought up
    assert (
        s.prometheus_url
        == f"http://127.0.0.1:{other.prometheus_port}"
        != f"http://127.0.0.1:{lab.prometheus_port}"
    )
    assert s.ifaces == tuple(f"ebt-x1-{p}" for p in ("client", "lb", "stable", "canary"))
    assert s.rollout_haproxy_socket == Layout(other).haproxy_socket == f"{lab.state_dir}/haproxy-x1.sock"
    # `--lab` alone is still the default instance, brought up by the dashboard
    s = options.load_or_exit(build_parser().parse_args(["--config", EMPTY, "--lab"]), lab=options.LAB_UP)
    assert ups == [lab] and s.prometheus_url == f"http://127.0.0.1:{lab.prometheus_port}"


def test_lab_instance_not_up_or_misnamed_exits_2_and_says_so(lab, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--config", EMPTY, "--lab-instance", "x2", "snapshot", "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lab-instance x2: lab instance x2 is not up (run `ebpftop lab up --instance x2`)" in err
    for bad in ("LAB", "toolong", "a-b", ""):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["--lab-instance", bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --lab-instance: {bad!r} is not a lab instance name: use 1-4 characters" in err


@pytest.mark.parametrize(
    ("instance", "watch", "stop"),
    [
        ("lab", "`ebpftop --lab`", "`ebpftop lab down`"),
        ("x1", "`ebpftop --lab-instance x1`", "`ebpftop lab down --instance x1`"),
    ],
)
def test_lab_up_names_the_instance_in_its_hint(lab, tmp_path, monkeypatch, capsys, instance, watch, stop):
    """The hint `lab up` prints opens that very instance (checked by parsing it back)."""
    cfg = LabConfig(name=instance, state_dir=lab.state_dir, prometheus_port=lab.prometheus_port)
    if instance != "lab":
        lab_state(cfg, tmp_path / "x1tmp")
    # `lab up` reads its instance in the real state dir: here, the test's (its state file stands for a lab)
    monkeypatch.setattr(manager, "up", lambda config, say: None)
    real = manager.endpoints
    monkeypatch.setattr(
        manager, "endpoints", lambda config: real(dataclasses.replace(config, state_dir=lab.state_dir))
    )
    assert main(["lab", "up", "--instance", instance]) == 0
    out = capsys.readouterr().out
    assert f"watch with {watch}; stop with {stop}" in out
    argv = watch.strip("`").split()[1:]
    s = options.load_or_exit(build_parser().parse_args(["--config", EMPTY, *argv]), lab=options.LAB_RUNNING)
    assert s.ifaces == tuple(Layout(cfg).veth(p) for p in ("client", "lb", "stable", "canary"))


def test_a_named_lab_that_is_not_up_says_how_to_start_that_one(capsys, monkeypatch):
    from ebpftop.cli.main import main
    from ebpftop.lab import manager
    from ebpftop.lab.manager import LabStatus

    monkeypatch.setattr(manager, "status", lambda cfg: LabStatus(up=False, parts=[]))
    monkeypatch.setattr(manager, "require_root", lambda: None)
    main(["lab", "status", "--instance", "zz"])
    assert "`ebpftop lab up --instance zz`" in capsys.readouterr().out
    main(["lab", "status"])
    assert "`ebpftop lab up`)" in capsys.readouterr().out
