"""Who owns a flow and a CPU sample: cgroup path shapes, the one OpenTelemetry reading
shared by Flows and Profiles, and, for real, sockets in network namespaces and cgroups
this test makes, owned on both sides by the flows collector with BPF on their links."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time

import pytest
from conftest import need_root

from ebpftop.collectors.identity import diag
from ebpftop.collectors.identity.cgroup import parse_cgroup
from ebpftop.collectors.identity.process import IdentityCache, read_identity
from ebpftop.collectors.profiles.model import tag
from ebpftop.collectors.profiles.tags import process_tags

UID = "1f3c2b5e-8a7d-4c21-9b0e-2a4f6d8c0e11"
CID = "a" * 64


@pytest.mark.parametrize(
    "text, unit, container, runtime, pod, qos",
    [
        ("0::/system.slice/nginx.service\n", "nginx.service", None, None, None, None),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", None, None, None, None),
        (f"0::/system.slice/docker-{CID}.scope\n", None, CID, "docker", None, None),
        (f"12:memory:/docker/{CID}\n0::/\n", None, CID, "docker", None, None),
        (f"0::/machine.slice/libpod-{CID}.scope/container\n", None, CID, "podman", None, None),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            + UID.replace("-", "_")
            + f".slice/cri-containerd-{CID}.scope\n",
            None,
            CID,
            "containerd",
            UID,
            "burstable",
        ),
        (
            f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
            None,
            CID,
            "cri-o",
            UID,
            "guaranteed",
        ),
        (f"0::/kubepods/besteffort/pod{UID}/{CID}\n", None, CID, None, UID, "besteffort"),
        ("0::/\n", None, None, None, None, None),
    ],
)
def test_a_cgroup_path_names_unit_container_runtime_pod_and_qos(text, unit, container, runtime, pod, qos):
    cg = parse_cgroup(text)
    assert (cg.unit, cg.container_id, cg.runtime, cg.pod_uid, cg.qos) == (unit, container, runtime, pod, qos)


def fake_proc(tmp_path, pid: int, environ: dict[str, str], cgroup: str) -> str:
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text("server\n")
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in environ.items()) + b"\0")
    (d / "cgroup").write_text(cgroup)
    return str(tmp_path / "proc")


def test_flows_and_profiles_read_one_identity_and_percent_decode_otel_values(tmp_path):
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=check%20out,deployment.environment=prod%2Ceu"}
    proc = fake_proc(tmp_path, 4242, env, "0::/system.slice/checkout.service\n")
    flows = read_identity(4242, proc=proc)
    profiles = process_tags(4242, proc=proc)
    assert flows.service == tag(profiles, "service") == "check out"
    assert flows.env == tag(profiles, "env") == "prod,eu"
    assert flows.unit == tag(profiles, "unit") == "checkout.service"


def test_a_pod_from_the_api_is_joined_by_uid_at_every_read(tmp_path):
    proc = fake_proc(tmp_path, 7, {}, f"0::/kubepods/burstable/pod{UID}/{CID}\n")

    class Pods:
        def __init__(self):
            self.known = {}

        def lookup(self, uid):
            return self.known.get(uid)

    from ebpftop.collectors.identity.kube_model import PodInfo

    pods = Pods()
    cache = IdentityCache(proc=proc, pods=pods)
    assert cache.get(7).pod is None and cache.get(7).pod_uid == UID
    pods.known[UID] = PodInfo(
        name="checkout-7d9f-x2x",
        namespace="shop",
        uid=UID,
        workload_kind="Deployment",
        workload_name="checkout",
        containers=((CID, "app"),),
    )
    ident = cache.get(7)  # no ttl to wait for: the pod is looked up at every read
    assert (ident.pod, ident.namespace, ident.workload, ident.container_name) == (
        "checkout-7d9f-x2x",
        "shop",
        "Deployment/checkout",
        "app",
    )
    assert ident.where() == "shop/checkout-7d9f-x2x"


def test_an_exact_sock_diag_request_finds_the_connection_then_its_listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    acc, _ = srv.accept()
    here = cli.getsockname()
    ino = lambda s: os.fstat(s.fileno()).st_ino  # noqa: E731
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, diag.NETLINK_SOCK_DIAG) as nl:
        known = {ino(srv)}  # the connection's sockets are "newer than the walk"
        got = diag.lookup_here(
            nl,
            [
                ("tcp", "127.0.0.1", port, here[0], here[1]),  # the accepted socket
                ("tcp", here[0], here[1], "127.0.0.1", port),  # the client's
                ("tcp", "127.0.0.1", port, "127.0.0.9", 5555),  # no such connection: the listener
                ("tcp", "127.0.0.1", 1, "127.0.0.1", 2),  # nothing at all
            ],
            known,
        )
    # the listener is asked for when the socket is unknown or missing
    assert got == [(ino(acc), ino(srv)), (ino(cli), None), (ino(srv), None), (None, None)]
    for s in (cli, acc, srv):
        s.close()


@pytest.mark.parametrize("family", ["v4", "v6", "dual-stack"])
def test_the_socket_tables_answer_as_sock_diag_does(family):
    """Without CAP_SYS_ADMIN the /proc/PID/net tables stand in for sock_diag: every kind
    of query gets the kernel's own answer (a connection, its other end, the listener of
    an ended one, nothing, an unconnected UDP socket), whether the listener is known."""
    from ebpftop.collectors.identity import proctable

    fam, bind, host = {
        "v4": (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
        "v6": (socket.AF_INET6, "::1", "::1"),
        "dual-stack": (socket.AF_INET6, "::", "127.0.0.1"),  # IPv4 into a v6 listener
    }[family]
    elsewhere = "::9" if ":" in host else "127.0.0.9"
    ino = lambda s: os.fstat(s.fileno()).st_ino  # noqa: E731
    with contextlib.ExitStack() as held:
        srv = held.enter_context(socket.socket(fam))
        srv.bind((bind, 0))
        srv.listen()
        port = srv.getsockname()[1]
        cli = held.enter_context(socket.create_connection((host, port)))
        acc = held.enter_context(srv.accept()[0])
        udp = held.enter_context(socket.socket(fam, socket.SOCK_DGRAM))
        udp.bind((bind, 0))
        here = cli.getsockname()[:2]
        queries = [
            ("tcp", host, port, *here),
            ("tcp", *here, host, port),
            ("tcp", host, port, elsewhere, 5555),
            ("tcp", host, 1, host, 2),
            ("udp", host, udp.getsockname()[1], elsewhere, 4444),
        ]
        for known in ({ino(srv)}, set()):
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, diag.NETLINK_SOCK_DIAG) as nl:
                kernel = diag.lookup_here(nl, queries, known)
            assert proctable.lookup(f"/proc/{os.getpid()}/net", queries, known) == kernel
        assert [a[0] for a in kernel] == [ino(acc), ino(cli), ino(srv), None, ino(udp)]


def test_a_socket_table_line_that_does_not_parse_is_skipped():
    from ebpftop.collectors.identity import proctable

    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n"
        "   1: garbage\n"
        "   2: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1\n"
    )
    assert proctable.parse(text) == {("127.0.0.1", 8080, "0.0.0.0", 0): (0x0A, 4242)}


# --- for real: two namespaces, two cgroups, one bridge; BPF on the host's side --------

SERVER = r"""
import socket, sys, threading, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 8000)); srv.listen(64)
print("listening", flush=True)
def serve(c):
    with c:
        while c.recv(4096):
            c.sendall(b"ok")
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CLIENT = r"""
import socket, sys, time
held = socket.create_connection((sys.argv[1], 8000))
print(held.getsockname()[1], flush=True)
while True:
    held.sendall(b"x" * 200); held.recv(16)
    with socket.create_connection((sys.argv[1], 8000)) as short:  # one per "request"
        short.sendall(b"y"); short.recv(16)
    time.sleep(0.1)
"""


def remove_tree(path: str) -> None:
    """rmdir a test cgroup and its parents up to the cgroup2 root while they are empty."""
    from ebpftop.lab import cgroups

    root = cgroups.mountpoint() or "/"
    while path.startswith(root + "/") and path != root:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            return
        path = os.path.dirname(path)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_services():
    """ns `<tag>s` runs the server (cgroup srv-<tag>.scope, an OTel resource), ns `<tag>c`
    the client (cli-<tag>.scope); their veths meet on a host bridge with no address, as
    the lab's parts do, so nothing reaches the host's networks."""
    with services("ebti" + secrets.token_hex(2)) as s:
        yield s


@contextlib.contextmanager
def services(tag: str, server_cgroup: str | None = None):
    """`server_cgroup`: the server's cgroup path under the cgroup2 root (default: a scope)."""
    need_root()
    from ebpftop.lab import cgroups

    net = f"10.{100 + secrets.randbelow(100)}.{secrets.randbelow(250)}"
    made: list[tuple[str, str]] = []
    procs: list[subprocess.Popen] = []
    try:
        sh("ip", "link", "add", f"{tag}br", "type", "bridge")
        made.append(("link", f"{tag}br"))
        sh("ip", "link", "set", f"{tag}br", "up")
        for part, host in (("s", 1), ("c", 2)):
            ns, veth = f"{tag}{part}", f"{tag}{part}"
            sh("ip", "netns", "add", ns)
            made.append(("netns", ns))
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            made.append(("link", veth))
            sh("ip", "link", "set", veth, "master", f"{tag}br", "up")
            sh("ip", "-n", ns, "addr", "add", f"{net}.{host}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        groups = {p: cgroups.create(cgroups.scope_path(f"{p}-{tag}.scope")) for p in ("srv", "cli")}
        if server_cgroup:
            made.append(("cgroup", groups["srv"]))
            groups["srv"] = cgroups.create(os.path.join(cgroups.mountpoint(), server_cgroup))
        made += [("cgroup", g) for g in groups.values()]
        env = {
            **os.environ,
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=check%20out,k8s.pod.label.track=canary",
        }
        srv = subprocess.Popen(
            ["ip", "netns", "exec", f"{tag}s", sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=cgroups.joiner(groups["srv"]),
        )
        procs.append(srv)
        assert srv.stdout.readline().strip() == "listening"
        cli = subprocess.Popen(
            ["ip", "netns", "exec", f"{tag}c", sys.executable, "-c", CLIENT, f"{net}.1"],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=cgroups.joiner(groups["cli"]),
        )
        procs.append(cli)
        held_port = int(cli.stdout.readline())
        yield dict(tag=tag, srv=srv.pid, cli=cli.pid, held=held_port, groups=groups, net=net)
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        for kind, name in reversed(made):
            if kind == "netns":
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            elif kind == "link":
                subprocess.run(["ip", "link", "del", name], capture_output=True)
            else:
                remove_tree(name)


@pytest.mark.root
@pytest.mark.integration
def test_both_ends_in_their_own_namespace_and_cgroup_are_owned_with_their_identity(two_services):
    import asyncio

    from ebpftop.collectors.flows.collector import FlowsCollector

    s = two_services
    tag = s["tag"]

    async def run():
        c = FlowsCollector([f"{tag}s", f"{tag}c"], interval=0.5)
        await c.start()
        try:
            end, data = time.monotonic() + 90, None
            while time.monotonic() < end:
                await asyncio.sleep(0.5)
                data = await c.collect()
                held = [f for f in data.flows if s["held"] in (f.sport, f.dport)]
                shorts = [
                    f for f in data.flows if f.proto == "tcp" and 8000 in (f.sport, f.dport) and f not in held
                ]
                if held and held[0].peer_pid and any(f.pid and f.peer_pid for f in shorts):
                    return data, held[0], shorts
            raise AssertionError(f"no owned flows in 90 s: {data and data.flows[:4]}")
        finally:
            await c.close()

    data, held, shorts = asyncio.run(run())
    assert {held.pid, held.peer_pid} == {s["srv"], s["cli"]}
    srv, cli = data.identity(s["srv"]), data.identity(s["cli"])
    assert (srv.netns, cli.netns) == (f"{tag}s", f"{tag}c")
    assert srv.cgroup.endswith(f"/srv-{tag}.scope") and srv.unit == f"srv-{tag}.scope"
    assert cli.cgroup.endswith(f"/cli-{tag}.scope") and cli.unit == f"cli-{tag}.scope"
    assert (srv.service, srv.track) == ("check out", "canary") and cli.service is None
    # connections that came and went (one per request): both ends still named, the
    # server's through its listener, the client's through the connect the kernel saw
    short = next(f for f in shorts if f.pid and f.peer_pid)
    assert {short.pid, short.peer_pid} == {s["srv"], s["cli"]}
    assert data.namespaces is not None and data.namespaces >= 3


WITHOUT_SYS_ADMIN = r"""
import asyncio, json, sys, time
from ebpftop.collectors.flows.collector import FlowsCollector
from ebpftop.collectors.identity import diag

tag, held_port, srv_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
refused = diag.lookup_in({f"/proc/{srv_pid}/ns/net": []}, set())[f"/proc/{srv_pid}/ns/net"]

async def run():
    c = FlowsCollector([f"{tag}s", f"{tag}c"], interval=0.5)
    await c.start()
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            await asyncio.sleep(0.5)
            data = await c.collect()
            held = [f for f in data.flows if held_port in (f.sport, f.dport)]
            shorts = [f for f in data.flows
                      if f.proto == "tcp" and 8000 in (f.sport, f.dport) and f not in held]
            if held and held[0].peer_pid and any(f.pid and f.peer_pid for f in shorts):
                short = next(f for f in shorts if f.pid and f.peer_pid)
                return dict(held=[held[0].pid, held[0].peer_pid], short=[short.pid, short.peer_pid],
                            notices=list(data.notices))
        return dict(notices=list(data.notices), flows=[str(f) for f in data.flows[:4]])
    finally:
        await c.close()

print(json.dumps(dict(refused=str(refused), **asyncio.run(run()))))
"""


@pytest.mark.root
@pytest.mark.integration
def test_without_cap_sys_admin_both_ends_are_still_owned(two_services):
    """As the agent's unit and DaemonSet run it (CAP_SYS_ADMIN out of the bounding set):
    setns is refused, so each namespace's /proc/PID/net tables name the sockets; the
    server end of every connection, held or ended, is owned, and no notice says otherwise."""
    import json

    s = two_services
    args = (s["tag"], str(s["held"]), str(s["srv"]))
    out = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-c", WITHOUT_SYS_ADMIN, *args],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert "CAP_SYS_ADMIN" in got["refused"]  # the child really could not enter
    assert "held" in got, got
    assert set(got["held"]) == {s["srv"], s["cli"]}
    assert set(got["short"]) == {s["srv"], s["cli"]}
    assert not [n for n in got["notices"] if "owners not looked up" in n]


@pytest.mark.root
@pytest.mark.integration
def test_a_process_in_a_pods_cgroup_is_named_by_the_api_in_flows_and_profiles():
    """The server runs in a cgroup shaped as the kubelet makes them (systemd driver,
    containerd) for a pod the contract server lists on this node (tests/k8s_contract.py:
    no real Kubernetes API runs here; the server follows the documented API). Flows names
    its pod, namespace, workload and container through one shared list and watch, and
    Profiles' tags for the same process say the same."""
    import asyncio

    from k8s_contract import NODE, UID, ContractServer, cid

    from ebpftop.collectors.flows.collector import FlowsCollector
    from ebpftop.collectors.identity.kube_pods import PodCache
    from ebpftop.collectors.identity.shared_pods import SharedPods
    from ebpftop.collectors.profiles.tags import TagCache
    from ebpftop.collectors.rollout.kube import KubeAccess

    name = "ebti" + secrets.token_hex(2)
    slug = UID["checkout"].replace("-", "_")
    path = (
        f"{name}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slug}.slice/"
        f"cri-containerd-{cid(1)}.scope"
    )
    with ContractServer(token="t") as server, services(name, server_cgroup=path) as s:
        access = KubeAccess(server=server.url, source="test kubeconfig", token="t")
        pods = SharedPods(PodCache(access, NODE, timeout=5.0))

        async def run():
            c = FlowsCollector([f"{name}s", f"{name}c"], interval=0.5, pods=pods)
            await c.start()
            try:
                end = time.monotonic() + 90
                while time.monotonic() < end:
                    await asyncio.sleep(0.5)
                    data = await c.collect()
                    who = data.identity(s["srv"])
                    if who is not None and who.pod:
                        return data, who, TagCache(pods=pods).get(s["srv"])
                raise AssertionError(f"the server's pod was never named: {data.owners}")
            finally:
                await c.close()

        data, who, tags = asyncio.run(run())
    assert (who.pod_uid, who.qos, who.container, who.runtime) == (
        UID["checkout"],
        "burstable",
        cid(1),
        "containerd",
    )
    assert (who.pod, who.namespace, who.workload, who.container_name) == (
        "checkout-7f9c6d5b8-x2x4z",
        "shop",
        "Deployment/checkout",
        "app",
    )
    assert who.where() == "shop/checkout-7f9c6d5b8-x2x4z" and who.netns == f"{name}s"
    assert (tag(tags, "pod"), tag(tags, "ns"), tag(tags, "workload")) == (
        "checkout-7f9c6d5b8-x2x4z",
        "shop",
        "Deployment/checkout",
    )
    assert len(server.lists()) == 1  # one list served both, not a call per flow or per sample
    # the payload carries it as recordings and `snapshot --json` do
    from ebpftop.core.codec import from_jsonable, to_jsonable

    again = from_jsonable(type(data), to_jsonable(data))
    assert again.identity(s["srv"]) == who


def test_namespaces_that_cannot_be_entered_are_said_not_silent():
    """Without CAP_SYS_ADMIN (the agent's unit leaves it out) setns fails: the flows pane's
    notices say so instead of showing unowned flows without a reason."""
    from ebpftop.collectors.identity.sockets import ProcWalk, SocketFinder

    def refused(work, known):
        return {
            path: OSError(1, f"setns {path}: Operation not permitted (needs CAP_SYS_ADMIN)") for path in work
        }

    finder = SocketFinder(lookup=refused)
    finder.walked = ProcWalk(host=1, readers={2: "/proc/9/ns/net"}, where={"10.0.0.2": [2]}, pids=1)
    assert finder.find([("tcp", "10.0.0.2", 80, "10.0.0.1", 40000)]) == {
        ("tcp", "10.0.0.2", 80, "10.0.0.1", 40000): None
    }
    assert "1 network namespace(s)" in finder.problem and "CAP_SYS_ADMIN" in finder.problem
    finder._lookup = lambda work, known: {path: [(None, None)] for path in work}
    finder.find([("tcp", "10.0.0.2", 80, "10.0.0.1", 40000)])
    assert finder.problem is None


def test_the_per_process_cache_never_grows_past_its_bound(monkeypatch):
    """Flows' identities and Profiles' tags share one cache type: a node where processes
    come and go for weeks (the kiosk) keeps at most MAX_ENTRIES, dropping the expired
    first, then everything; a fresh entry is never read twice."""
    from ebpftop.collectors.identity import pidcache

    monkeypatch.setattr(pidcache, "MAX_ENTRIES", 4)
    now = [0.0]
    reads: list[tuple[int, str | None]] = []

    def read(pid: int, comm: str | None) -> str:
        reads.append((pid, comm))
        return f"{pid}:{comm}"

    cache = pidcache.PidCache(read, ttl=10.0, clock=lambda: now[0])
    assert [cache.get(p, "x") for p in (1, 2, 1)] == ["1:x", "2:x", "1:x"] and len(reads) == 2
    now[0] = 5.0
    cache.get(3, "x")
    cache.get(4, "x")
    now[0] = 11.0  # 1 and 2 expired, 3 and 4 fresh
    cache.get(5, "x")  # full: the expired go, the fresh stay
    assert len(cache) == 3 and cache.cached(3, "x", now[0]) == "3:x"
    for pid in range(6, 20):
        cache.get(pid, "x")
        assert len(cache) <= 4
    assert cache.cached(1, "x", now[0]) is None
