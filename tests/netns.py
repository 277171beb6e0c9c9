"""Network namespaces and veth links made by a test, and always taken down.

    with veth_pair() as net:                 # two fresh namespaces, one veth link
        srv = net.b.python(SERVER_CODE, ...)  # a process inside namespace b
        net.a.run("ping", "-c1", net.b_ip4)

Names are unique per call (tests may run in parallel with other people's). Addresses
are private/documentation ranges (10.x.y.0/24, 2001:db8::/32) and exist only inside
the namespaces, so nothing leaks onto the host's networks. Teardown runs even when
the test fails: processes started through `popen`/`python` are killed, any process
still inside a namespace is killed, then the namespaces (and with them the veths)
are deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

PYTHON = sys.executable
_KERNEL_FS = (
    "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing; "
    "mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug; "
    "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf; "
)


@dataclass
class Netns:
    name: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, *argv: str, bpf: bool = False) -> list[str]:
        """`ip netns exec` gives the command a fresh /sys without tracefs or bpffs;
        `bpf=True` mounts them again (in that command's private mount namespace only)."""
        if bpf:
            argv = ("sh", "-c", _KERNEL_FS + 'exec "$@"', "sh", *argv)
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60, bpf: bool = False, **kw
    ) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        proc = subprocess.run(self.cmd(*argv, bpf=bpf), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"in netns {self.name}: {' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def popen(self, *argv: str, bpf: bool = False, **kw) -> subprocess.Popen:
        """A process inside the namespace (`ip netns exec` and `sh -c exec` both exec,
        so .pid is the command's own pid)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        p = subprocess.Popen(self.cmd(*argv, bpf=bpf), **kw)
        self.procs.append(p)
        return p

    def python(self, code: str, *args: str, **kw) -> subprocess.Popen:
        return self.popen(PYTHON, "-c", code, *args, **kw)

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if p.isdigit()]

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.communicate(timeout=10)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@dataclass
class VethPair:
    a: Netns
    b: Netns
    a_if: str
    b_if: str
    a_ip4: str
    b_ip4: str
    a_ip6: str
    b_ip6: str


def _sh(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")


@contextlib.contextmanager
def netns(prefix: str = "ebtn") -> Iterator[Netns]:
    ns = Netns(f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}")
    _sh("ip", "netns", "add", ns.name)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        ns.teardown()


@contextlib.contextmanager
def veth_pair(prefix: str = "ebtn") -> Iterator[VethPair]:
    """Two namespaces joined by a veth link, IPv4 and IPv6 addressed, up."""
    tag = secrets.token_hex(3)
    a_if, b_if = f"v{tag}a", f"v{tag}b"  # <= 15 chars
    net4 = f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}"
    net6 = f"2001:db8:{secrets.randbelow(0xFFFF):x}"
    with netns(prefix) as a, netns(prefix) as b:
        _sh("ip", "link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name)
        pair = VethPair(a, b, a_if, b_if, f"{net4}.1", f"{net4}.2", f"{net6}::1", f"{net6}::2")
        for ns, ifname, ip4, ip6 in ((a, a_if, pair.a_ip4, pair.a_ip6), (b, b_if, pair.b_ip4, pair.b_ip6)):
            ns.run("ip", "addr", "add", f"{ip4}/24", "dev", ifname)
            ns.run("ip", "-6", "addr", "add", f"{ip6}/64", "dev", ifname, "nodad")
            ns.run("ip", "link", "set", ifname, "up")
        yield pair
