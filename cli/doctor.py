"""What the collectors need from this machine, checked one by one (`ebpftop doctor`).

Each check returns a `Check`: ok True (present), False (missing) or None (a warning:
works, but read the detail), with what was found and the command that fixes it. The
parsers (capabilities, mounts, header versions) are pure functions of text so tests can
feed them fixtures; the checks read the live system. Nothing here attaches or creates
anything: the BPF probes create a map or load a two-instruction program, the perf probe
opens a disabled event, and each fd is closed at once; path checks only look.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ebpftop.collectors.bpfsys import BpfError, bpf
from ebpftop.core.settings import Settings

_T = TypeVar("_T")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # True ok, False missing, None warning / could not tell
    detail: str
    fix: str = ""
    essential: bool = True  # a missing essential check makes doctor exit 1

    @property
    def label(self) -> str:
        return {True: "ok", False: "MISSING", None: "warn"}[self.ok]


# ---------------------------------------------------------------- capabilities

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
_CAP_NAMES = {
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_PERFMON: "CAP_PERFMON",
    CAP_BPF: "CAP_BPF",
}


def parse_cap_eff(status_text: str) -> int | None:
    """The effective capability mask from /proc/<pid>/status text, None if absent."""
    m = re.search(r"^CapEff:\s*([0-9a-fA-F]+)\s*$", status_text, re.M)
    return int(m.group(1), 16) if m else None


def missing_caps(cap_eff: int) -> list[str]:
    """Capabilities the BPF collectors lack. CAP_SYS_ADMIN stands in for BPF and
    PERFMON (kernels before 5.8 have only it); nothing stands in for NET_ADMIN (TC)."""

    def has(bit: int) -> bool:
        return bool(cap_eff >> bit & 1)

    admin = has(CAP_SYS_ADMIN)
    out = []
    for bit in (CAP_BPF, CAP_PERFMON):
        if not (has(bit) or admin):
            out.append(_CAP_NAMES[bit])
    if not has(CAP_NET_ADMIN):
        out.append(_CAP_NAMES[CAP_NET_ADMIN])
    return out


def check_privileges(status_text: str | None = None, euid: int | None = None) -> Check:
    euid = os.geteuid() if euid is None else euid
    if status_text is None:
        status_text = Path("/proc/self/status").read_text()
    cap = parse_cap_eff(status_text)
    if cap is None:
        return Check(
            "root/capabilities", None, "no CapEff line in /proc/self/status", "run as root: sudo ebpftop"
        )
    missing = missing_caps(cap)
    who = "root" if euid == 0 else f"uid {euid}"
    if not missing:
        return Check(
            "root/capabilities", True, f"{who}; CapEff {cap:#x} has CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"
        )
    return Check(
        "root/capabilities",
        False,
        f"{who}; missing {', '.join(missing)} (CapEff {cap:#x})",
        "run as root: sudo ebpftop (or grant cap_bpf,cap_perfmon,cap_net_admin)",
    )


# ---------------------------------------------------------------- bpf() via ctypes

BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_LINK_CREATE = 0, 5, 28
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_RINGBUF = 2, 27
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_TCX_INGRESS = 46


def _bpf(cmd: int, attr: bytes) -> tuple[int, int]:
    """bpf(cmd, attr) -> (fd or -1, errno), for probes that report rather than raise."""
    try:
        return bpf(cmd, attr), 0
    except BpfError as exc:
        return -1, exc.errno or errno.ENOSYS


def _map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> tuple[int, int]:
    return _bpf(BPF_MAP_CREATE, struct.pack("=IIII", map_type, key_size, value_size, max_entries))


def _err(code: int) -> str:
    return f"{errno.errorcode.get(code, code)} ({os.strerror(code)})"


def check_bpf_syscall() -> Check:
    fd, code = _map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
    if fd >= 0:
        os.close(fd)
        return Check("bpf syscall", True, "created (and closed) a 1-entry array map")
    fix = {
        errno.EPERM: "run as root: sudo ebpftop",
        errno.ENOSYS: "kernel built without CONFIG_BPF_SYSCALL (or unsupported CPU architecture)",
    }.get(code, "check dmesg and /proc/sys/kernel/unprivileged_bpf_disabled")
    return Check("bpf syscall", False, f"BPF_MAP_CREATE failed: {_err(code)}", fix)


def check_ringbuf() -> Check:
    fd, code = _map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, os.sysconf("SC_PAGE_SIZE"))
    if fd >= 0:
        os.close(fd)
        return Check("ring buffer", True, "created (and closed) a BPF_MAP_TYPE_RINGBUF map")
    if code == errno.EINVAL:
        return Check(
            "ring buffer",
            False,
            "kernel rejects BPF_MAP_TYPE_RINGBUF (needs Linux >= 5.8)",
            "upgrade the kernel to 5.8 or newer",
        )
    return Check(
        "ring buffer", False, f"BPF_MAP_TYPE_RINGBUF create failed: {_err(code)}", "run as root: sudo ebpftop"
    )


def _load_pass_program() -> tuple[int, int]:
    """A SCHED_CLS program `r0 = -1; exit` (TC_ACT_UNSPEC / TCX_NEXT: changes nothing)."""
    insns = struct.pack("<BBhi", 0xB7, 0x00, 0, -1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack(
        "=IIQQ", BPF_PROG_TYPE_SCHED_CLS, 2, ctypes.addressof(insn_buf), ctypes.addressof(license_buf)
    )
    fd, code = _bpf(BPF_PROG_LOAD, attr)
    del insn_buf, license_buf  # kept alive until here: the kernel reads them during the call
    return fd, code


def _free_ifindex() -> int:
    used = {i for i, _ in socket.if_nameindex()}
    n = 0x7FFF0000
    while n in used:
        n += 1
    return n


def check_tcx() -> Check:
    """tcx (Linux >= 6.6) is probed without attaching anything: BPF_LINK_CREATE with
    attach type BPF_TCX_INGRESS on an ifindex that does not exist. A kernel with tcx
    looks the device up and says ENODEV; one without rejects the attach type, EINVAL."""
    prog, code = _load_pass_program()
    if prog < 0:
        return Check(
            "tcx",
            None,
            f"could not load a probe program: {_err(code)}",
            "run as root; ebpftop falls back to classic TC (clsact) if tcx is missing",
            essential=False,
        )
    try:
        link, code = _bpf(BPF_LINK_CREATE, struct.pack("=III", prog, _free_ifindex(), BPF_TCX_INGRESS))
        if link >= 0:  # cannot happen for a free ifindex; never leave it attached
            os.close(link)
            code = errno.ENODEV
    finally:
        os.close(prog)
    if code == errno.ENODEV:
        return Check(
            "tcx", True, "kernel accepts BPF_TCX_INGRESS links (probed; nothing attached)", essential=False
        )
    if code == errno.EINVAL:
        return Check(
            "tcx",
            False,
            f"kernel {platform.release()} has no tcx links (needs Linux >= 6.6)",
            "none needed: flows use classic TC (clsact qdisc) instead",
            essential=False,
        )
    return Check("tcx", None, f"probe inconclusive: {_err(code)}", "", essential=False)


_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241, "ppc64le": 319, "s390x": 331}


def check_perf_event() -> Check:
    """A disabled system-wide cpu-clock event on CPU 0, closed at once: what the CPU
    profiler opens on every CPU (needs CAP_PERFMON or perf_event_paranoid <= 0)."""
    nr = _PERF_EVENT_OPEN.get(platform.machine())
    name = "perf events"
    if nr is None:
        return Check(name, None, f"no probe for {platform.machine()}", "", essential=False)
    # perf_event_attr (first 64 bytes): type=SOFTWARE, size, config=CPU_CLOCK, ..., disabled=1
    attr = ctypes.create_string_buffer(struct.pack("=IIQQQQQ", 1, 64, 0, 0, 0, 0, 1).ljust(64, b"\0"), 64)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(
        ctypes.c_long(nr), attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_ulong(8)
    )  # PERF_FLAG_FD_CLOEXEC
    if fd >= 0:
        os.close(fd)
        return Check(name, True, "opened (and closed) a system-wide cpu-clock event", essential=False)
    code = ctypes.get_errno()
    fix = (
        "run as root, or: sysctl kernel.perf_event_paranoid=-1"
        if code in (errno.EPERM, errno.EACCES)
        else "kernel built without CONFIG_PERF_EVENTS"
    )
    return Check(
        name,
        False,
        f"perf_event_open failed: {_err(code)}; the CPU profile pane will be off",
        fix,
        essential=False,
    )


# ---------------------------------------------------------------- kernel headers


def headers_release(build_dir: Path) -> str | None:
    """The kernel release the headers in `build_dir` were made for."""
    for rel in ("include/generated/utsrelease.h", "include/config/kernel.release"):
        try:
            text = (build_dir / rel).read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r'UTS_RELEASE\s+"([^"]+)"', text)
        if m:
            return m.group(1)
        if rel.endswith("kernel.release") and text.strip():
            return text.strip()
    m = re.match(r"linux-headers-(.+)$", build_dir.name)
    return m.group(1) if m else None


def check_headers(
    release: str | None = None,
    modules: Path = Path("/lib/modules"),
    kheaders: Path = Path("/sys/kernel/kheaders.tar.xz"),
) -> Check:
    release = release or platform.release()
    build = modules / release / "build"
    fix = (
        f"apt-get install linux-headers-{release}  (or `make setup`, which links the nearest Debian headers)"
    )
    if not build.exists():
        if kheaders.exists():
            return Check("kernel headers", True, f"none installed; bcc uses the kernel's built-in {kheaders}")
        return Check("kernel headers", False, f"{build} does not exist", fix)
    resolved = build.resolve()
    have = headers_release(resolved)
    if have is None:
        return Check(
            "kernel headers", None, f"{build} -> {resolved}: cannot tell which kernel they are for", fix
        )
    if have == release:
        return Check("kernel headers", True, f"{resolved} ({have})")
    return Check(
        "kernel headers",
        None,
        f"{build} -> {resolved} is for {have}, the kernel is {release}; fine for ebpftop, whose BPF "
        "reads only tracepoint arguments and packet data (stable ABI), but other bcc tools may misbehave",
        f"only if other bcc tools need exact headers: apt-get install linux-headers-{release}",
    )


# ---------------------------------------------------------------- mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, fs type) for each line of /proc/self/mounts."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((_unescape(parts[1]), parts[2]))
    return out


MOUNTS = (
    # name, fs type, usual places, mount command, essential
    (
        "tracefs",
        "tracefs",
        ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"),
        "mount -t tracefs tracefs /sys/kernel/tracing",
        True,
    ),
    ("debugfs", "debugfs", ("/sys/kernel/debug",), "mount -t debugfs debugfs /sys/kernel/debug", False),
    ("bpffs", "bpf", ("/sys/fs/bpf",), "mount -t bpf bpf /sys/fs/bpf", True),
)


def check_mounts(mounts_text: str | None = None) -> list[Check]:
    if mounts_text is None:
        mounts_text = Path("/proc/self/mounts").read_text()
    mounts = parse_mounts(mounts_text)
    checks = []
    for name, fstype, places, cmd, essential in MOUNTS:
        where = [mp for mp, fs in mounts if fs == fstype]
        if where:
            preferred = [mp for mp in where if mp in places] or where
            checks.append(Check(name, True, f"mounted at {preferred[0]}", essential=essential))
        else:
            why = {
                "tracefs": "tracepoints (TCP events) need it",
                "debugfs": "only older tools look for tracing under it",
                "bpffs": "pinned deny rules need it",
            }[name]
            checks.append(Check(name, False, f"not mounted; {why}", cmd, essential=essential))
    return checks


# ---------------------------------------------------------------- bcc


def check_bcc() -> Check:
    try:
        import bcc
    except Exception as exc:  # ImportError, or OSError from a missing libbcc
        return Check(
            "bcc",
            False,
            f"import bcc failed: {exc}",
            "apt-get install python3-bpfcc, and run ebpftop from Debian's python3 "
            "(or a venv made with --system-site-packages)",
        )
    version = getattr(bcc, "__version__", "") or "version unknown"
    return Check("bcc", True, f"imports ({version})")


# ---------------------------------------------------------------- endpoints


def check_endpoint(
    name: str,
    url: str | None,
    paths: Iterable[str] = ("/-/ready", "/api/v1/status/buildinfo"),
    timeout: float = 2.0,
    setting: str = "",
    any_status: bool = False,
    client_options: dict[str, Any] | None = None,
) -> Check:
    """GET the first of `paths` under `url` that answers 2xx (any HTTP status with
    `any_status`) within `timeout` seconds. `client_options` (headers, auth, verify) are
    the credentials and CA the collector would use."""
    if not url:
        return Check(
            name, None, "not configured", f"set {setting} to use it" if setting else "", essential=False
        )
    import httpx

    fix = f"start it, or fix {setting} (now {url})" if setting else f"start it, or fix its URL ({url})"
    base = url.rstrip("/")
    last = ""
    # httpx's timeout is per read: a server trickling its answer would hold doctor as long
    # as it likes, so each GET runs on a daemon worker and `timeout` bounds all of it.
    from ebpftop.collectors.deadline import DaemonExecutor

    # trust_env: proxies and NO_PROXY from the environment apply, as they do for the
    # collectors' requests sessions.
    with (
        DaemonExecutor(1, "doctor-http") as pool,
        httpx.Client(timeout=timeout, follow_redirects=False, **(client_options or {})) as client,
    ):
        for path in paths:
            try:
                resp = pool.submit(client.get, base + path).result(timeout)
            except TimeoutError:
                return Check(name, False, f"{base}{path}: no complete answer within {timeout:g} s", fix)
            except httpx.HTTPError as exc:
                return Check(name, False, f"{base}: {type(exc).__name__}: {exc}", fix)
            if any_status or 200 <= resp.status_code < 300:
                return Check(name, True, f"{base}{path} answered HTTP {resp.status_code}")
            last = f"{base}{path} answered HTTP {resp.status_code}"
            if resp.status_code in (401, 403):
                return Check(
                    name,
                    False,
                    last + " (reachable, credentials missing or refused)",
                    f"check the credential settings next to {setting or 'the URL'}",
                )
    return Check(name, False, last, fix)


def prometheus_client_options(settings: Settings) -> dict[str, Any]:
    """Token, basic auth and CA for Prometheus, from the canary settings when present
    (read with getattr: the canary collector owns those fields). Raises ValueError
    naming the setting and file when one cannot be used."""
    import ssl

    def text(path: str) -> str:
        return Path(path).read_text()

    def read(field: str, key: str, how: Callable[[str], _T]) -> _T | None:
        path = getattr(settings, field, None)
        if not path:
            return None
        try:
            return how(path)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ValueError(f"[canary] {key} {path}: {getattr(exc, 'strerror', None) or exc}") from None

    opts: dict[str, Any] = {}
    token = read("prometheus_token_file", "bearer_token_file", text)
    if token is not None:
        opts["headers"] = {"Authorization": "Bearer " + token.strip()}
    user = getattr(settings, "prometheus_user", None)
    if user:
        password = read("prometheus_password_file", "basic_auth_password_file", text) or ""
        opts["auth"] = (user, password.rstrip("\n"))
    ca = read("prometheus_ca_file", "ca_file", lambda path: ssl.create_default_context(cafile=path))
    if ca is not None:
        opts["verify"] = ca
    return opts


# Endpoints with a health path of their own; any other URL setting counts as reachable
# when it answers HTTP at all.
HEALTH_PATHS = {"prometheus_url": ("/-/ready", "/api/v1/status/buildinfo")}


def check_endpoints(settings: Settings) -> list[Check]:
    """Every URL setting (declared with check=http_url in settings.py)."""
    from ebpftop.core import config
    from ebpftop.core.settings import http_url

    out = []
    for opt in config.options():
        if opt.check is not http_url:
            continue
        name = opt.key.removesuffix("_url")
        url = getattr(settings, opt.name)
        where = f"[{opt.section}] {opt.key}"
        if opt.name == "prometheus_url" and url:
            try:
                client_options = prometheus_client_options(settings)
            except ValueError as exc:
                out.append(Check(name, False, f"cannot use {exc}", "fix that setting or the file"))
                continue
            out.append(
                check_endpoint(
                    name, url, HEALTH_PATHS[opt.name], setting=where, client_options=client_options
                )
            )
        elif opt.name in HEALTH_PATHS:
            out.append(check_endpoint(name, url, HEALTH_PATHS[opt.name], setting=where))
        else:
            out.append(check_endpoint(name, url, ("/",), setting=where, any_status=True))
    return out


def check_writable(name: str, path: str | None, setting: str) -> Check:
    """Whether ebpftop could write `path` (creating it and its directories), without
    creating anything now."""
    if not path:
        return Check(name, None, "not configured", "", essential=False)
    try:
        return _writable(name, Path(path), setting)
    except OSError as exc:  # e.g. a parent we may not even look into
        return Check(
            name,
            False,
            f"cannot check {path}: {exc.strerror or exc}",
            f"run as root, or point {setting} elsewhere",
            essential=False,
        )


def _writable(name: str, p: Path, setting: str) -> Check:
    if p.exists():
        if p.is_dir():
            return Check(name, False, f"{p} is a directory", f"point {setting} at a file", essential=False)
        if os.access(p, os.W_OK):
            return Check(name, True, f"{p} is writable", essential=False)
        return Check(
            name,
            False,
            f"{p} is not writable by uid {os.geteuid()}",
            f"run as root, or point {setting} elsewhere",
            essential=False,
        )
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return Check(name, True, f"{p} will be created (under {parent})", essential=False)
    return Check(
        name,
        False,
        f"cannot create {p}: {parent} is not writable by uid {os.geteuid()}",
        f"run as root, or point {setting} elsewhere",
        essential=False,
    )


def check_config(files: Iterable[tuple[Path, bool]]) -> Check:
    """Which configuration files this run read (they parsed, or doctor would not run)."""
    seen = [f"{p} ({'read' if p.exists() else 'absent'})" for p, _ in files]
    return Check("config", True, "; ".join(seen) or "no files", essential=False)


# ---------------------------------------------------------------- all of them


def run_checks(settings: Settings) -> list[Check]:
    checks = [
        check_privileges(),
        check_bpf_syscall(),
        check_ringbuf(),
        check_tcx(),
        check_perf_event(),
        check_headers(),
    ]
    checks += check_mounts()
    checks.append(check_bcc())
    checks += check_endpoints(settings)
    # Actions refuse to run without their audit entry; watching works either way.
    checks.append(check_writable("audit log", settings.audit_log, "[audit] log"))
    if settings.record:
        checks.append(check_writable("record file", settings.record, "[record] path"))
    return checks


def passed(checks: Iterable[Check]) -> bool:
    return all(c.ok is not False for c in checks if c.essential)
