"""`ebpftop doctor`: parsers on fixture text, live checks as root, endpoints on loopback."""

from __future__ import annotations

import http.server
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import need_root

from ebpftop.cli import doctor
from ebpftop.cli.commands.doctor import format_checks
from ebpftop.cli.doctor import Check

STATUS = """Name:\tebpftop
Umask:\t0022
State:\tR (running)
CapInh:\t0000000000000000
CapPrm:\t{cap:016x}
CapEff:\t{cap:016x}
CapBnd:\t000001ffffffffff
"""

BIT = lambda n: 1 << n  # noqa: E731


# ---------------------------------------------------------------- capabilities


def test_cap_eff_is_read_from_status_text():
    assert doctor.parse_cap_eff(STATUS.format(cap=0x1FFFEFFFFFF)) == 0x1FFFEFFFFFF
    assert doctor.parse_cap_eff("Name:\tx\nCapPrm:\t00000000000000ff\n") is None


@pytest.mark.parametrize(
    "cap, missing",
    [
        (0x1FFFEFFFFFF, []),  # root here (no CAP_SYS_RESOURCE)
        (BIT(39) | BIT(38) | BIT(12), []),  # exactly what is needed
        (BIT(21) | BIT(12), []),  # SYS_ADMIN covers BPF and PERFMON
        (BIT(21), ["CAP_NET_ADMIN"]),  # ...but not TC
        (BIT(39) | BIT(12), ["CAP_PERFMON"]),
        (0, ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]),
    ],
)
def test_missing_capabilities(cap, missing):
    assert doctor.missing_caps(cap) == missing


def test_privileges_check_from_fixture_text():
    ok = doctor.check_privileges(STATUS.format(cap=BIT(39) | BIT(38) | BIT(12)), euid=0)
    assert ok.ok is True and ok.detail.startswith("root;")
    bad = doctor.check_privileges(STATUS.format(cap=0), euid=1000)
    assert bad.ok is False
    assert "uid 1000" in bad.detail and "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN" in bad.detail
    assert "sudo" in bad.fix


# ---------------------------------------------------------------- mounts

MOUNTS = """sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0
bpf /mnt/my\\040bpf bpf rw,relatime 0 0
"""


def test_mounts_are_parsed_with_octal_escapes():
    assert doctor.parse_mounts(MOUNTS) == [
        ("/sys", "sysfs"),
        ("/proc", "proc"),
        ("/sys/kernel/debug/tracing", "tracefs"),
        ("/mnt/my bpf", "bpf"),
    ]


def test_mount_checks_say_where_or_how_to_mount():
    checks = {c.name: c for c in doctor.check_mounts(MOUNTS)}
    assert (checks["tracefs"].ok, checks["tracefs"].detail) == (True, "mounted at /sys/kernel/debug/tracing")
    assert (checks["bpffs"].ok, checks["bpffs"].detail) == (True, "mounted at /mnt/my bpf")
    debugfs = checks["debugfs"]
    assert debugfs.ok is False and not debugfs.essential
    assert debugfs.fix == "mount -t debugfs debugfs /sys/kernel/debug"
    none = {c.name: c for c in doctor.check_mounts("proc /proc proc rw 0 0\n")}
    assert none["bpffs"].ok is False and none["bpffs"].essential
    assert none["bpffs"].fix == "mount -t bpf bpf /sys/fs/bpf"
    assert none["tracefs"].fix == "mount -t tracefs tracefs /sys/kernel/tracing"


# ---------------------------------------------------------------- kernel headers


def fake_headers(root: Path, release_dir: str, uts: str | None) -> Path:
    hdr = root / "usr" / "src" / f"linux-headers-{release_dir}"
    (hdr / "include" / "generated").mkdir(parents=True)
    if uts is not None:
        (hdr / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{uts}"\n')
    return hdr


def link_build(modules: Path, release: str, target: Path) -> None:
    (modules / release).mkdir(parents=True)
    (modules / release / "build").symlink_to(target)


def test_headers_for_the_running_kernel_are_ok(tmp_path):
    modules = tmp_path / "modules"
    link_build(modules, "6.1.0-9-amd64", fake_headers(tmp_path, "6.1.0-9-amd64", "6.1.0-9-amd64"))
    c = doctor.check_headers("6.1.0-9-amd64", modules, kheaders=tmp_path / "none")
    assert c.ok is True and "6.1.0-9-amd64" in c.detail


def test_headers_of_another_kernel_warn_and_say_why_it_is_fine(tmp_path):
    modules = tmp_path / "modules"
    link_build(modules, "6.18.44-x", fake_headers(tmp_path, "6.1.0-56-amd64", "6.1.0-56-amd64"))
    c = doctor.check_headers("6.18.44-x", modules, kheaders=tmp_path / "none")
    assert c.ok is None
    assert "is for 6.1.0-56-amd64, the kernel is 6.18.44-x" in c.detail
    assert "fine for ebpftop" in c.detail and "tracepoint arguments and packet data" in c.detail
    assert "linux-headers-6.18.44-x" in c.fix


def test_header_version_falls_back_to_the_directory_name(tmp_path):
    hdr = fake_headers(tmp_path, "6.1.0-7-amd64", uts=None)
    assert doctor.headers_release(hdr) == "6.1.0-7-amd64"


def test_missing_headers_are_missing_with_the_package_to_install(tmp_path):
    c = doctor.check_headers("6.9.9-z", tmp_path / "modules", kheaders=tmp_path / "none")
    assert c.ok is False and c.essential
    assert "apt-get install linux-headers-6.9.9-z" in c.fix
    kheaders = tmp_path / "kheaders.tar.xz"
    kheaders.write_bytes(b"")
    assert doctor.check_headers("6.9.9-z", tmp_path / "modules", kheaders=kheaders).ok is True


# ---------------------------------------------------------------- live checks (root, BPF)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_live_privilege_bpf_and_perf_checks_pass_as_root():
    need_root()
    before = open_fds()
    for check in (
        doctor.check_privileges(),
        doctor.check_bpf_syscall(),
        doctor.check_ringbuf(),
        doctor.check_perf_event(),
    ):
        assert check.ok is True, check
    assert open_fds() == before  # every probe fd closed


def test_tcx_probe_matches_the_kernel_and_attaches_nothing():
    need_root()
    before = open_fds()
    c = doctor.check_tcx()
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    assert c.ok is ((major, minor) >= (6, 6)), c
    assert "nothing attached" in c.detail or c.ok is False
    assert open_fds() == before  # program fd closed; a link fd would have leaked here too


def test_live_mounts_and_bcc_as_set_up_by_make_setup():
    need_root()
    checks = {c.name: c for c in doctor.check_mounts()}
    assert checks["tracefs"].ok and checks["bpffs"].ok, checks
    assert doctor.check_bcc().ok is True


# ---------------------------------------------------------------- endpoints


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # The endpoint check honours proxy variables; these tests talk to loopback only.
    for var in [v for v in os.environ if v.lower() in ("http_proxy", "https_proxy", "all_proxy")]:
        monkeypatch.delenv(var)


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    token = ""

    def do_GET(self):
        code = self.status if self.path == "/-/ready" else 404
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            code = 401
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(status: int, token: str = "") -> str:
        handler = type("H", (_Handler,), {"status": status, "token": token})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_ready_endpoint_is_ok(http_server):
    url = http_server(200)
    c = doctor.check_endpoint("prometheus", url, setting="[canary] prometheus_url")
    assert c.ok is True and c.detail == f"{url}/-/ready answered HTTP 200"


def test_an_unready_endpoint_is_missing_with_its_status(http_server):
    url = http_server(503)
    c = doctor.check_endpoint("prometheus", url + "/", setting="[canary] prometheus_url")
    assert c.ok is False
    assert c.detail == f"{url}/api/v1/status/buildinfo answered HTTP 404"  # the last path tried
    assert "[canary] prometheus_url" in c.fix


def test_a_closed_port_is_missing_with_the_fix():
    url = f"http://127.0.0.1:{closed_port()}"
    c = doctor.check_endpoint("prometheus", url, setting="[canary] prometheus_url")
    assert c.ok is False and c.essential
    assert "ConnectError" in c.detail
    assert c.fix == f"start it, or fix [canary] prometheus_url (now {url})"


def test_an_endpoint_without_a_health_path_only_has_to_answer(http_server):
    url = http_server(200)
    c = doctor.check_endpoint("pprof", url, ("/nothing-here",), any_status=True)
    assert c.ok is True and c.detail == f"{url}/nothing-here answered HTTP 404"


def test_every_url_setting_is_probed(http_server):
    from ebpftop.core.settings import Settings

    url = http_server(200)
    checks = doctor.check_endpoints(Settings(prometheus_url=url))
    assert [(c.name, c.ok) for c in checks] == [("prometheus", True)]


def test_prometheus_credentials_from_the_canary_settings_are_sent(http_server, tmp_path):
    url = http_server(200, token="s3cret")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    settings = SimpleNamespace(prometheus_url=url, prometheus_token_file=str(token_file))
    assert [(c.name, c.ok) for c in doctor.check_endpoints(settings)] == [("prometheus", True)]

    (c,) = doctor.check_endpoints(SimpleNamespace(prometheus_url=url))
    assert (
        c.ok is False
        and c.detail == f"{url}/-/ready answered HTTP 401 (reachable, credentials missing or refused)"
    )

    (c,) = doctor.check_endpoints(
        SimpleNamespace(prometheus_url=url, prometheus_token_file=str(tmp_path / "nope"))
    )
    assert c.ok is False
    assert c.detail == f"cannot use [canary] bearer_token_file {tmp_path / 'nope'}: No such file or directory"

    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    (c,) = doctor.check_endpoints(SimpleNamespace(prometheus_url=url, prometheus_ca_file=str(bad_ca)))
    assert c.ok is False and c.detail.startswith(f"cannot use [canary] ca_file {bad_ca}: ")


def test_an_unconfigured_endpoint_is_a_non_essential_note():
    c = doctor.check_endpoint("prometheus", None, setting="[canary] prometheus_url")
    assert (c.ok, c.essential) == (None, False)
    assert doctor.passed([c])


# ---------------------------------------------------------------- verdict and output


def test_writable_paths_are_checked_without_creating_anything(tmp_path):
    c = doctor.check_writable("audit log", str(tmp_path / "a" / "b" / "audit.jsonl"), "[audit] log")
    assert c.ok is True and c.detail.endswith(f"will be created (under {tmp_path})")
    assert list(tmp_path.iterdir()) == []
    c = doctor.check_writable("audit log", str(tmp_path), "[audit] log")
    assert c.ok is False and c.detail == f"{tmp_path} is a directory"
    assert doctor.check_writable("record file", None, "[record] path").ok is None


def test_unwritable_paths_are_missing_for_a_non_root_user():
    need_root()
    with tempfile.TemporaryDirectory(prefix="ebpftop-doctor-") as d:
        os.chmod(d, 0o755)  # nobody may look in, not write
        code = (
            "import sys; from ebpftop.cli.doctor import check_writable as w; "
            "c = w('audit log', sys.argv[1], '[audit] log'); print(c.ok, c.detail, '|', c.fix)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, f"{d}/sub/audit.jsonl"],
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (
            f"False cannot create {d}/sub/audit.jsonl: {d} is not writable by uid 65534"
            " | run as root, or point [audit] log elsewhere"
        )
        assert os.listdir(d) == []


def test_config_check_lists_the_files_read(tmp_path):
    present = tmp_path / "a.toml"
    present.write_text("")
    c = doctor.check_config([(present, False), (tmp_path / "b.toml", False)])
    assert c.detail == f"{present} (read); {tmp_path / 'b.toml'} (absent)"


def test_only_essential_missing_checks_fail():
    assert doctor.passed([Check("a", True, ""), Check("b", None, ""), Check("c", False, "", essential=False)])
    assert not doctor.passed([Check("a", True, ""), Check("d", False, "")])


def test_output_is_wrapped_and_escaped():
    checks = [
        Check("kernel headers", None, "word " * 40, "fix it " * 20),
        Check("evil", False, "name \x1b[31mred\x1b[0m", "x"),
    ]
    text = format_checks(checks, columns=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "\x1b" not in text and "\\x1b[31mred" in text
    assert text.splitlines()[0].startswith("warn     kernel headers  word word")
    assert "MISSING  evil" in text and "fix: x" in text


def run_cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EBPFTOP_", "SUDO_", "XDG_")) and not k.lower().endswith("_proxy")
    }
    env["HOME"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", *argv], env=env, capture_output=True, text=True, timeout=60
    )


def test_doctor_command_passes_here_and_fails_on_an_unreachable_endpoint(tmp_path, http_server):
    need_root()
    proc = run_cli(tmp_path, "--prometheus-url", http_server(200), "doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    names = [c["name"] for c in doc["checks"]]
    assert names == [
        "config",
        "root/capabilities",
        "bpf syscall",
        "ring buffer",
        "tcx",
        "perf events",
        "kernel headers",
        "tracefs",
        "debugfs",
        "bpffs",
        "bcc",
        "prometheus",
        "audit log",
    ]
    assert (
        doc["checks"][0]["detail"]
        == f"/etc/ebpftop/config.toml ({'read' if Path('/etc/ebpftop/config.toml').exists() else 'absent'}); "
        f"{tmp_path}/.config/ebpftop/config.toml (absent)"
    )
    assert doc["ok"] is True and doc["checks"][-1]["status"] == "ok"

    url = f"http://127.0.0.1:{closed_port()}"
    proc = run_cli(tmp_path, "--prometheus-url", url, "doctor")
    assert proc.returncode == 1
    assert "MISSING  prometheus" in proc.stdout
    assert f"fix: start it, or fix [canary] prometheus_url (now {url})" in proc.stdout
    assert proc.stdout.rstrip().endswith("not ready: prometheus")
