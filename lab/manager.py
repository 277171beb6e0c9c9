"""`ebpftop lab up | down | status | inject`: the lab's life cycle.

`up` builds the parts in dependency order (network, services, HAProxy, Prometheus,
load), recording each in the state file the moment it exists; if any part fails, the
error names the part and everything already started is removed again. `down` removes
what the state file names plus anything else carrying the lab's names (namespaces,
links, temp dirs, processes in the lab's namespaces or using its temp dir), so it also
cleans after a crash that lost the state file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import glob
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from ebpftop.core.settings import Settings

from . import cgroups, faults, gobuild, haproxy, loadgen, nodefaults, nodes, procs, prometheus, topology
from . import state as statefile
from .errors import LabError
from .knobs import KNOBS_PATH, Knobs, parse_terms
from .layout import MAX_NODES, PARTS, VARIANTS, LabConfig, Layout
from .web import answers, fetch

Say = Callable[[str], None]
READY_TIMEOUT = 20.0
DEFAULT_CONFIG = LabConfig()  # frozen: one instance serves every call's default


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class PartStatus:
    part: str
    ok: bool
    detail: str
    traffic: bool = False
    """Not ok because requests fail, the part itself runs: rebuilding the lab would not
    help (a deny rule, weights at 0, a knob) and would throw its state away."""


@dataclass(frozen=True)
class LabStatus:
    up: bool
    """A state file exists (the lab was brought up and not taken down)."""
    parts: list[PartStatus]
    state: statefile.LabState | None = None

    @property
    def healthy(self) -> bool:
        """Every part runs and the load generator's requests succeed."""
        return self.up and bool(self.parts) and all(p.ok for p in self.parts)

    @property
    def running(self) -> bool:
        """Every part runs (requests may still fail: see `healthy`)."""
        return self.up and bool(self.parts) and all(p.ok or p.traffic for p in self.parts)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("lab", "needs root (network namespaces, veth links); run it with sudo")


# -- up ----------------------------------------------------------------------------


def up(config: LabConfig = DEFAULT_CONFIG, say: Say = _quiet) -> statefile.LabState:
    """Bring the lab up (or confirm it is up). Raises LabError naming the failed part."""
    config.validate()
    require_root()
    layout = Layout(config)
    with statefile.locked(
        layout.lock_file, on_wait=lambda: say(f"waiting for another `ebpftop lab` ({config.name})")
    ):
        return _up(layout, say)


def _up(layout: Layout, say: Say) -> statefile.LabState:
    config = layout.config
    try:
        current = status(config)
    except statefile.StateFileError as exc:
        say(f"ignoring {exc}")
        current = LabStatus(up=False, parts=[])
    if current.running:
        say("lab is already up (with the settings it was started with; `lab down` first to change them)")
        for p in current.parts:
            if not p.ok:
                say(f"but {p.part}: {p.detail}")
        return current.state  # type: ignore[return-value]
    leftovers = _find_leftovers(layout, current.state)
    if leftovers:
        why = (
            "an unfinished `lab up`"
            if current.state and not current.state.complete
            else (
                "a lab with parts down: " + ", ".join(p.part for p in current.parts if not p.ok)
                if current.state
                else "a lab whose state file is gone"
            )
        )
        say(f"cleaning leftovers of {why}")
        for item in teardown(layout, current.state):
            say(f"  removed {item}")
    _preflight(layout)

    st = statefile.LabState(name=config.name, config=_config_dict(config), started=time.time())

    def save() -> None:
        statefile.save(layout.state_file, st)

    try:
        st.tmpdir = tempfile.mkdtemp(prefix=layout.tmp_prefix)
        os.chmod(st.tmpdir, 0o755)
        save()

        def record(kind: str, name: str) -> None:
            (st.namespaces if kind == "netns" else st.links).append(name)
            save()

        topology.create(layout, record)
        nodes.create_network(layout, record)
        say(
            f"network: bridge {layout.bridge} {layout.cidr('bridge')}, "
            f"namespaces {', '.join(layout.namespaces)}"
        )

        binary = gobuild.build(config.state_dir)
        for variant in VARIANTS:
            rec = _start_service(layout, st.tmpdir, variant, binary)
            st.processes.append(rec)
            save()
            procs.wait_ready(
                rec,
                functools.partial(answers, layout.service_url(variant) + "/healthz"),
                timeout=READY_TIMEOUT,
                what=f"{layout.service_url(variant)}/healthz",
            )
            say(
                f"{variant}: pid {rec.pid}, {layout.service_url(variant)} (version {VARIANTS[variant]}), "
                f"pprof {layout.pprof_url(variant)}"
            )

        rec, api = _start_haproxy(layout, st.tmpdir)
        st.processes.append(rec)
        save()
        procs.wait_ready(
            rec,
            lambda: _haproxy_ready(api, layout),
            timeout=READY_TIMEOUT,
            what=f"runtime API {api.socket_path}, {layout.stats_url}/metrics or health checks",
        )
        say(
            f"haproxy: pid {rec.pid}, traffic {layout.app_url}, stats {layout.stats_url}/stats, "
            f"weights stable={config.weights[0]} canary={config.weights[1]}, runtime API {api.socket_path}"
        )

        if config.nodes:
            nodes.start(layout, st, save, say, functools.partial(_scope, layout))

        rec, prom = _start_prometheus(layout, st.tmpdir)
        st.processes.append(rec)
        save()
        procs.wait_ready(
            rec,
            lambda: prom.ready() and _targets_up(prom),
            timeout=READY_TIMEOUT,
            what=f"{layout.prometheus_url}/-/ready or its scrape targets",
        )
        say(
            f"prometheus: pid {rec.pid}, {layout.prometheus_url} (scraping every 1s, exemplars on"
            + (f"; job {prometheus.NODE_JOB}: {config.nodes} node agents)" if config.nodes else ")")
        )

        rec = procs.start(
            "loadgen",
            [
                sys.executable,
                "-m",
                "ebpftop.lab.loadgen",
                "--url",
                layout.app_url + "/",
                "--rate",
                f"{config.rate:g}",
                "--report",
                f"{loadgen.REPORT_S:g}",
            ],
            log=os.path.join(st.tmpdir, "loadgen.log"),
            netns=layout.netns("client"),
            ip_bin=config.ip_bin,
            env={"PYTHONUNBUFFERED": "1"},
            cgroup=_scope(layout, "client"),
        )
        st.processes.append(rec)
        save()
        procs.wait_ready(
            rec, lambda: os.path.getsize(rec.log) > 0, timeout=READY_TIMEOUT, what="load generator"
        )
        say(f"loadgen: pid {rec.pid}, {config.rate:g} req/s from {layout.addr('client')} to {layout.app_url}")

        st.complete = True
        save()
        return st
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        say(f"lab up failed: {reason}; stopping what was started")
        for item in teardown(layout, st):
            say(f"  removed {item}")
        if isinstance(exc, LabError) or not isinstance(exc, Exception):
            raise
        raise LabError("lab", reason) from exc


def _config_dict(config: LabConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["weights"] = list(config.weights)
    return d


def config_from_state(st: statefile.LabState) -> LabConfig:
    d = dict(st.config)
    d["weights"] = tuple(d.get("weights", (90, 10)))
    known = {f.name for f in dataclasses.fields(LabConfig)}
    return LabConfig(**{k: v for k, v in d.items() if k in known})


def _preflight(layout: Layout) -> None:
    cfg = layout.config
    for part, binary, pkg in (
        ("network", cfg.ip_bin, "iproute2"),
        ("haproxy", cfg.haproxy_bin, "haproxy"),
        ("prometheus", cfg.prometheus_bin, "prometheus"),
    ):
        if shutil.which(binary) is None:
            raise LabError(part, f"{binary!r} not found on PATH (install {pkg}: make setup)")
    gobuild.go_binary()
    _check_port_free("prometheus", "127.0.0.1", cfg.prometheus_port)
    topology.check_subnet_free(layout)


def _check_port_free(part: str, host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise LabError(part, f"cannot use {host}:{port}: {exc.strerror}") from None
    holder = ""
    try:
        for c in psutil.net_connections("tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                holder = f" (held by pid {c.pid} {psutil.Process(c.pid).name()})"
                break
    except psutil.Error:
        pass
    raise LabError(part, f"port {host}:{port} is busy{holder}; choose another with --prometheus-port")


def _instance(config: LabConfig) -> str:
    """` --instance NAME` in the commands a message names, for a lab that is not the default."""
    return "" if config.name == DEFAULT_CONFIG.name else f" --instance {config.name}"


def _scope(layout: Layout, part: str) -> str | None:
    """The part's cgroup v2 directory (lab/cgroups.py), or None where there is no cgroup
    v2 hierarchy: the lab then runs without, and identity shows no unit."""
    try:
        return cgroups.create(cgroups.scope_path(layout.scope(part)))
    except LabError:
        return None


def _remove_scopes(layout: Layout) -> list[str]:
    root = cgroups.mountpoint()
    if root is None:
        return []
    removed = []
    # By name: the fleet nodes' scopes too, also when the state file is gone.
    node_scopes = glob.glob(cgroups.scope_path(layout.scope("*"), root))
    paths = {cgroups.scope_path(layout.scope(part), root) for part in PARTS} | set(node_scopes)
    for path in sorted(paths):
        if os.path.isdir(path) and cgroups.remove(path):
            removed.append(f"cgroup {path}")
    return removed


def _start_service(layout: Layout, tmpdir: str, variant: str, binary: str) -> statefile.ProcRecord:
    cfg, version = layout.config, VARIANTS[variant]
    env = {
        "OTEL_SERVICE_NAME": cfg.service_name,
        # The track as a Kubernetes pod label would arrive: the profiles pane compares
        # canary and stable by it (the versions, v1.0.0 and v1.1.0, do not say which is which).
        "OTEL_RESOURCE_ATTRIBUTES": f"service.name={cfg.service_name},service.version={version},"
        f"deployment.environment=lab,k8s.pod.label.track={variant}",
    }
    argv = [
        binary,
        "-listen",
        f"0.0.0.0:{cfg.service_port}",
        "-version",
        version,
        "-track",
        variant,
        "-service",
        cfg.service_name,
    ]
    return procs.start(
        variant,
        argv,
        log=os.path.join(tmpdir, f"{variant}.log"),
        netns=layout.netns(variant),
        ip_bin=cfg.ip_bin,
        env=env,
        cgroup=_scope(layout, variant),
    )


def _start_haproxy(layout: Layout, tmpdir: str) -> tuple[statefile.ProcRecord, haproxy.RuntimeAPI]:
    cfg = layout.config
    conf = os.path.join(tmpdir, "haproxy.cfg")
    sock = layout.haproxy_socket
    with open(conf, "w") as f:
        f.write(
            haproxy.render_config(
                lb_addr=layout.addr("lb"),
                app_port=cfg.app_port,
                stats_port=cfg.stats_port,
                socket_path=sock,
                pid_file=os.path.join(tmpdir, "haproxy.pid"),
                servers={v: f"{layout.addr(v)}:{cfg.service_port}" for v in VARIANTS},
                weights=dict(zip(VARIANTS, cfg.weights, strict=True)),
            )
        )
    rec = procs.start(
        "haproxy",
        [cfg.haproxy_bin, "-db", "-f", conf],
        log=os.path.join(tmpdir, "haproxy.log"),
        netns=layout.netns("lb"),
        ip_bin=cfg.ip_bin,
        cgroup=_scope(layout, "lb"),
    )
    return rec, haproxy.RuntimeAPI(sock)


def _haproxy_ready(api: haproxy.RuntimeAPI, layout: Layout) -> bool:
    """Runtime API and exporter answer, and health checks found both services."""
    try:
        servers = api.servers_state()
    except haproxy.RuntimeAPIError:
        return False
    return all(s.op_state == "running" for s in servers) and answers(layout.stats_url + "/metrics")


def _targets_up(api: prometheus.PrometheusAPI) -> bool:
    try:
        targets = api.targets()
    except OSError:
        return False
    return bool(targets) and all(t["health"] == "up" for t in targets)


def _start_prometheus(layout: Layout, tmpdir: str) -> tuple[statefile.ProcRecord, prometheus.PrometheusAPI]:
    cfg = layout.config
    conf = os.path.join(tmpdir, "prometheus.yml")
    data = os.path.join(tmpdir, "prometheus-data")
    os.makedirs(data)
    with open(conf, "w") as f:
        f.write(
            prometheus.render_config(
                services={v: f"{layout.addr(v)}:{cfg.service_port}" for v in VARIANTS},
                haproxy=f"{layout.addr('lb')}:{cfg.stats_port}",
                nodes=nodes.scrape_targets(layout),
            )
        )
    argv = prometheus.command(cfg.prometheus_bin, config_file=conf, data_dir=data, port=cfg.prometheus_port)
    rec = procs.start("prometheus", argv, log=os.path.join(tmpdir, "prometheus.log"), ip_bin=cfg.ip_bin)
    return rec, prometheus.PrometheusAPI(layout.prometheus_url)


# -- down --------------------------------------------------------------------------


def down(config: LabConfig = DEFAULT_CONFIG, say: Say = _quiet) -> list[str]:
    """Remove the lab; returns what was removed (empty: nothing was up)."""
    config.validate()
    require_root()
    layout = Layout(config)
    with statefile.locked(
        layout.lock_file, on_wait=lambda: say(f"waiting for another `ebpftop lab` ({config.name})")
    ) as remove_lock:
        try:
            st = statefile.load(layout.state_file)
        except statefile.StateFileError as exc:
            say(f"ignoring {exc}; removing what carries the lab's names")
            st = None
        removed = teardown(Layout(config_from_state(st)) if st else layout, st)
        remove_lock()
    for item in removed:
        say(f"removed {item}")
    return removed


def teardown(layout: Layout, st: statefile.LabState | None) -> list[str]:
    """Stop and delete everything of this lab instance, known or found. Never raises on absence."""
    removed: list[str] = nodes.stop_agents(st)  # at once: each takes a moment to detach
    for rec in reversed(st.processes if st else []):
        if procs.stop(rec):
            removed.append(f"process {rec.part} (pid {rec.pid})")
    namespaces = sorted(set(st.namespaces if st else []) | set(topology.existing_namespaces(layout)))
    node_namespaces = {layout.node_netns(k) for k in range(1, MAX_NODES + 1)}
    for ns in namespaces:
        for pid in topology.namespace_pids(layout, ns):
            if pid != os.getpid():
                removed.append(f"process pid {pid} ({_comm(pid)}) in namespace {ns}")
                # a node's agent found by name gets the time to detach that SIGTERM asks for
                procs.kill_pid(pid, nodes.AGENT_STOP_S if ns in node_namespaces else 3.0)
    tmpdirs = sorted(
        set(
            ([st.tmpdir] if st and st.tmpdir else [])
            + glob.glob(os.path.join(tempfile.gettempdir(), layout.tmp_prefix + "*"))
        )
    )
    # Only the lab's own programs: someone's `less` on a lab log also names the temp dir.
    ours = {os.path.basename(layout.config.haproxy_bin), os.path.basename(layout.config.prometheus_bin)}
    for tmp in tmpdirs:
        for p in procs.find_by_argv_fragment(tmp):
            if _argv0(p) in ours:
                removed.append(f"process pid {p.pid} ({_comm(p.pid)}) using {tmp}")
                procs.kill_pid(p.pid)
    # Links first: deleting a veth end removes the pair at once, whereas a namespace's
    # own devices go away asynchronously after `ip netns delete`.
    existing = set(topology.existing_links(layout))
    for link in sorted(set(st.links if st else []) | existing, key=lambda n: n == layout.bridge):
        if link in existing and topology.delete_link(layout, link):
            removed.append(f"link {link}")
    for ns in namespaces:
        if topology.delete_namespace(layout, ns):
            removed.append(f"namespace {ns}")
    for tmp in tmpdirs:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(f"temp dir {tmp}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(layout.haproxy_socket)
        removed.append(f"socket {layout.haproxy_socket}")
    removed += _remove_scopes(layout)
    removed += nodes.remove_pins(layout)
    if statefile.remove(layout.state_file):
        removed.append(f"state file {layout.state_file}")
    return removed


def _argv0(p: psutil.Process) -> str:
    try:
        argv = p.cmdline()
    except psutil.Error:
        return ""
    return os.path.basename(argv[0]) if argv else ""


def _comm(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def _find_leftovers(layout: Layout, st: statefile.LabState | None) -> bool:
    return bool(
        st
        or os.path.exists(layout.state_file)
        or topology.existing_namespaces(layout)
        or topology.existing_links(layout)
        or glob.glob(os.path.join(tempfile.gettempdir(), layout.tmp_prefix + "*"))
    )


# -- status ------------------------------------------------------------------------


def status(config: LabConfig = DEFAULT_CONFIG) -> LabStatus:
    layout = Layout(config)
    st = statefile.load(layout.state_file)
    if st is None:
        return LabStatus(up=False, parts=[])
    layout = Layout(config_from_state(st))
    parts: list[PartStatus] = []
    net = topology.status(layout)
    missing = [k for k, ok in net.items() if not ok]
    parts.append(
        PartStatus(
            "network",
            not missing,
            "missing or down: " + ", ".join(missing)
            if missing
            else f"{len(layout.namespaces)} namespaces, bridge {layout.bridge} {layout.cidr('bridge')}",
        )
    )
    if not st.complete:
        parts.append(PartStatus("lab", False, "`lab up` did not finish (crashed or still running)"))
    for variant in VARIANTS:
        parts.append(_service_status(layout, st, variant))
    parts.append(_haproxy_status(layout, st))
    parts.append(_prometheus_status(layout, st))
    parts.append(_loadgen_status(layout, st))
    parts += _node_status(layout, st)
    return LabStatus(up=True, parts=parts, state=st)


def _live_proc(st: statefile.LabState, part: str) -> statefile.ProcRecord | str:
    """The part's process record while it runs, else what is wrong."""
    rec = st.proc(part)
    if rec is None:
        return "not started"
    if not procs.alive(rec):
        return f"process {rec.pid} is gone"
    return rec


def _service_status(layout: Layout, st: statefile.LabState, variant: str) -> PartStatus:
    if variant in faults.down_services(st.tmpdir):
        # on purpose: `lab up` keeps the lab (rebuilding it would end the scenario)
        why = f"down by `lab inject {variant} down` (`... {variant} up` starts it)"
        return PartStatus(variant, False, why, traffic=True)
    rec = _live_proc(st, variant)
    if isinstance(rec, str):
        return PartStatus(variant, False, rec)
    url = layout.service_url(variant)
    try:
        code, body = fetch(url + KNOBS_PATH, timeout=1.0)
        knobs = Knobs.from_dict(json.loads(body)).describe() if code == 200 else f"knobs: HTTP {code}"
    except (OSError, ValueError) as exc:
        return PartStatus(variant, False, f"pid {rec.pid} alive but {url} not answering: {exc}")
    return PartStatus(variant, True, f"pid {rec.pid}, {url}, {knobs}, pprof {layout.pprof_url(variant)}")


def _loadgen_status(layout: Layout, st: statefile.LabState) -> PartStatus:
    """Alive, and what its requests did between its last two summary lines."""
    rec = _live_proc(st, "loadgen")
    if isinstance(rec, str):
        return PartStatus("loadgen", False, rec)
    head = f"pid {rec.pid}, {layout.config.rate:g} req/s"
    summaries = [s for s in map(loadgen.Summary.parse, procs.log_lines(rec, 3)) if s is not None]
    if not summaries:
        return PartStatus("loadgen", True, f"{head}; no summary yet (one every {loadgen.REPORT_S:g} s)")
    try:
        age = time.time() - os.path.getmtime(rec.log)
    except OSError:
        age = 0.0
    if age > 3 * loadgen.REPORT_S:
        return PartStatus(
            "loadgen", False, f"{head}; no summary for {age:.0f} s (one every {loadgen.REPORT_S:g} s): stuck"
        )
    last = summaries[-1].since(summaries[-2] if len(summaries) > 1 else loadgen.Summary())
    detail = f"{head}; last {loadgen.REPORT_S:g} s: {last.describe()}"
    why = last.failing()
    if why:
        return PartStatus("loadgen", False, f"{detail}; requests fail: {why}", traffic=True)
    return PartStatus("loadgen", True, detail)


def _agent_down(st: statefile.LabState, k: int) -> bool:
    """Node k's agent was stopped on purpose (`lab inject node<k> agent=down`)."""
    return nodefaults.load(st.tmpdir).get(nodes.node_name(k), nodefaults.NodeFaults()).agent_down


def _node_status(layout: Layout, st: statefile.LabState) -> list[PartStatus]:
    """Per node: its processes, its Prometheus target's health, the faults on."""
    if not layout.config.nodes:
        return []
    try:
        health = {
            t["labels"].get("node", ""): t["health"]
            for t in prometheus.PrometheusAPI(layout.prometheus_url).targets()
            if t["job"] == prometheus.NODE_JOB
        }
    except OSError:
        health = {}
    on = nodefaults.load(st.tmpdir)
    out = []
    for k in layout.node_ids:
        name = nodes.node_name(k)
        fault = on.get(name, nodefaults.NodeFaults())
        tail = f"target {health.get(name, 'unknown')}, faults {fault.describe()}"
        gone = [
            f"{what} {rec}"
            for what in ("server", "load")
            if isinstance(rec := _live_proc(st, nodes.part(k, what)), str)
        ]
        agent = _live_proc(st, nodes.part(k, "agent"))
        if fault.agent_down:
            why = f"agent down by `lab inject {name} agent=down` (`... agent=up` starts it); {tail}"
            out.append(PartStatus(name, False, why, traffic=not gone))
            continue
        if isinstance(agent, str):
            gone.insert(0, f"agent {agent}")
        if gone:
            out.append(PartStatus(name, False, "; ".join(gone) + f"; {tail}"))
            continue
        assert not isinstance(agent, str)
        out.append(
            PartStatus(
                name,
                True,
                f"agent pid {agent.pid}, http://{layout.node_addr(k)}:{nodes.METRICS_PORT}/metrics, {tail}",
            )
        )
    return out


def _haproxy_status(layout: Layout, st: statefile.LabState) -> PartStatus:
    rec = _live_proc(st, "haproxy")
    if isinstance(rec, str):
        return PartStatus("haproxy", False, rec)
    try:
        servers = haproxy.RuntimeAPI(layout.haproxy_socket).servers_state()
    except haproxy.RuntimeAPIError as exc:
        return PartStatus("haproxy", False, f"pid {rec.pid} alive but {exc}")
    if not answers(layout.stats_url + "/metrics"):
        return PartStatus(
            "haproxy", False, f"pid {rec.pid} alive but {layout.stats_url}/metrics not answering"
        )
    desc = ", ".join(f"{s.name} weight {s.weight} {s.op_state}" for s in servers)
    injected = faults.down_services(st.tmpdir)  # its server is down because the service is
    down = [s.name for s in servers if s.op_state != "running" and s.name not in injected]
    return PartStatus("haproxy", not down, f"pid {rec.pid}, {layout.app_url}, {desc}")


def _prometheus_status(layout: Layout, st: statefile.LabState) -> PartStatus:
    rec = _live_proc(st, "prometheus")
    if isinstance(rec, str):
        return PartStatus("prometheus", False, rec)
    api = prometheus.PrometheusAPI(layout.prometheus_url)
    try:
        targets = api.targets()
    except OSError as exc:
        return PartStatus("prometheus", False, f"pid {rec.pid} alive but {layout.prometheus_url}: {exc}")
    injected = tuple(f"//{layout.addr(v)}:" for v in faults.down_services(st.tmpdir)) + tuple(
        f"//{layout.node_addr(k)}:" for k in layout.node_ids if _agent_down(st, k)
    )
    bad = [
        f"{t['url']} {t['health']}" + (f" ({t['error']})" if t["error"] else "")
        for t in targets
        if t["health"] != "up" and not any(a in t["url"] for a in injected)
    ]
    up_count = len(targets) - len(bad)
    detail = f"pid {rec.pid}, {layout.prometheus_url}, targets up {up_count}/{len(targets)}"
    # A target not yet scraped is "unknown" for a second after start; that is not a fault.
    return PartStatus("prometheus", not bad, detail + ("; " + "; ".join(bad) if bad else ""))


# -- inject ------------------------------------------------------------------------


def inject(config: LabConfig, variant: str, terms: list[str]) -> Knobs:
    """Change a running service's knobs. Bad terms raise LabError before anything is sent."""
    if variant not in VARIANTS:
        raise LabError(
            "inject", f"unknown target {variant!r}: allowed {', '.join(VARIANTS)}, {faults.FLOOD}, node<K>"
        )
    parse_terms(terms)  # validate everything first: a bad term changes nothing
    layout = Layout(config)
    st = statefile.load(layout.state_file)
    if st is None:
        raise LabError("inject", f"the lab is not up (run `ebpftop lab up{_instance(config)}`)")
    url = Layout(config_from_state(st)).service_url(variant) + KNOBS_PATH
    try:
        code, body = fetch(url, timeout=2.0)
        if code != 200:
            raise OSError(f"HTTP {code}")
        new = parse_terms(terms, Knobs.from_dict(json.loads(body)))
        code, body = fetch(
            url,
            method="PUT",
            body=json.dumps(new.to_dict()).encode(),
            headers={"Content-Type": "application/json"},
            timeout=2.0,
        )
    except (OSError, ValueError) as exc:
        raise LabError(variant, f"knobs at {url}: {exc}") from None
    if code != 200:
        raise LabError(variant, f"knobs at {url} refused: HTTP {code} {body[:200]!r}")
    return Knobs.from_dict(json.loads(body))


def fault(config: LabConfig, target: str, terms: list[str]) -> str:
    """Apply a fault of lab/faults.py (a service down or up, the flood on or off); says
    what changed. Bad terms raise LabError before anything changes."""
    wanted = faults.parse(target, terms)
    layout = Layout(config)
    with statefile.locked(layout.lock_file):
        st, layout = _up_state(config, layout)
        if wanted.target == faults.FLOOD:
            done = _flood(layout, st, wanted)
        else:
            done = _service_fault(layout, st, wanted)
        statefile.save(layout.state_file, st)
    return done


def _up_state(config: LabConfig, layout: Layout, flags: str = "") -> tuple[statefile.LabState, Layout]:
    """The state of a lab that finished `lab up`, and its layout as it was started; else
    LabError naming the command that brings it up."""
    st = statefile.load(layout.state_file)
    if st is None or not st.tmpdir or not st.complete:
        raise LabError("inject", f"the lab is not up (run `ebpftop lab up{flags}{_instance(config)}`)")
    return st, Layout(config_from_state(st))


def node_fault(config: LabConfig, target: str, terms: list[str]) -> list[str]:
    """Make a fleet node misbehave (lab/nodefaults.py); says what changed. The terms and
    the node are checked whole before anything changes (LabError)."""
    wanted = nodefaults.parse(target, terms)
    layout = Layout(config)
    with statefile.locked(layout.lock_file):
        st, layout = _up_state(config, layout, " --nodes N")
        k = nodes.require(layout, target)
        try:
            return nodefaults.apply(
                layout, st, k, wanted, functools.partial(_scope, layout), timeout=nodes.READY_TIMEOUT
            )
        finally:
            statefile.save(layout.state_file, st)


def _replace_proc(st: statefile.LabState, part: str, rec: statefile.ProcRecord | None) -> None:
    st.processes = [p for p in st.processes if p.part != part] + ([rec] if rec else [])


def _flood(layout: Layout, st: statefile.LabState, wanted: faults.Fault) -> str:
    old = st.proc(faults.FLOOD)
    stopped = old is not None and procs.stop(old)
    _replace_proc(st, faults.FLOOD, None)
    if wanted.action == "off":
        return "flood off" if stopped else "flood was not running"
    assert st.tmpdir is not None
    to = layout.addr("stable")
    rec = procs.start(
        faults.FLOOD,
        faults.flood_argv(to, wanted.rate_bps),
        log=os.path.join(st.tmpdir, "flood.log"),
        netns=layout.netns("client"),
        ip_bin=layout.config.ip_bin,
        env={"PYTHONUNBUFFERED": "1"},
    )
    _replace_proc(st, faults.FLOOD, rec)
    procs.wait_ready(rec, lambda: os.path.getsize(rec.log) > 0, timeout=READY_TIMEOUT, what="flood")
    return (
        f"{wanted.describe()}: UDP {layout.addr('client')} -> {to}:{faults.FLOOD_PORT}, pid {rec.pid} "
        f"(`lab inject flood off` stops it)"
    )


def _service_fault(layout: Layout, st: statefile.LabState, wanted: faults.Fault) -> str:
    variant, tmpdir = wanted.target, st.tmpdir
    assert tmpdir is not None
    rec = st.proc(variant)
    if wanted.action == "down":
        faults.mark_down(tmpdir, variant, True)  # first: a status read meanwhile says why
        if rec is not None and procs.stop(rec):
            return f"{variant} down: pid {rec.pid} stopped (`lab inject {variant} up` starts it)"
        return f"{variant} was not running"
    if rec is not None and procs.alive(rec):
        faults.mark_down(tmpdir, variant, False)
        return f"{variant} is running (pid {rec.pid})"
    new = _start_service(layout, tmpdir, variant, gobuild.build(layout.config.state_dir))
    _replace_proc(st, variant, new)
    procs.wait_ready(
        new,
        functools.partial(answers, layout.service_url(variant) + "/healthz"),
        timeout=READY_TIMEOUT,
        what=f"{layout.service_url(variant)}/healthz",
    )
    faults.mark_down(tmpdir, variant, False)
    return f"{variant} up: pid {new.pid}, {layout.service_url(variant)}"


# -- wiring for the dashboard --------------------------------------------------------


@dataclass(frozen=True)
class LabEndpoints:
    """What the dashboard needs to watch and drive the lab."""

    prometheus_url: str
    ifaces: tuple[str, ...]
    """Root-side veth ends: every lab packet crosses one of them."""
    haproxy_socket: str
    haproxy_backend: str
    haproxy_servers: dict[str, str]
    """variant -> HAProxy server name in `haproxy_backend`."""
    service_pids: dict[str, int]
    """variant -> pid of the service process (for profiles)."""
    namespaces: tuple[str, ...]
    service: str = "checkout"
    """The service's name, as its telemetry says it: the canary, the rollout and the
    name typed to confirm a rollback are all this one."""
    pprof_urls: dict[str, str] = dataclasses.field(default_factory=dict)
    """variant -> the service's net/http/pprof (its samples carry trace_id and span_id)."""


def endpoints(config: LabConfig = DEFAULT_CONFIG) -> LabEndpoints | None:
    st = statefile.load(Layout(config).state_file)
    if st is None or not st.tmpdir:
        return None
    config = config_from_state(st)
    layout = Layout(config)
    return LabEndpoints(
        prometheus_url=layout.prometheus_url,
        ifaces=tuple(layout.veth(p) for p in ("client", "lb", "stable", "canary")),
        haproxy_socket=layout.haproxy_socket,
        haproxy_backend=haproxy.BACKEND,
        haproxy_servers={v: v for v in VARIANTS},
        service_pids={v: rec.pid for v in VARIANTS if (rec := st.proc(v)) is not None},
        namespaces=tuple(layout.namespaces),
        service=config.service_name,
        pprof_urls={v: layout.pprof_url(v) for v in VARIANTS},
    )


def lab_settings(settings: Settings, config: LabConfig = DEFAULT_CONFIG, say: Say = _quiet) -> Settings:
    """`settings` wired to the lab (brought up first when it is not healthy).

    Fills prometheus_url, ifaces, the services' pprof endpoints and HAProxy as the
    rollout controller (runtime socket, backend, canary and stable servers);
    `endpoints()` has the rest (service pids).
    Raises LabError.
    """
    up(config, say)
    ep = endpoints(config)
    assert ep is not None
    return wire_settings(settings, ep)


def wire_settings(settings: Settings, ep: LabEndpoints) -> Settings:
    """`settings` pointed at a running lab's endpoints (brings nothing up).

    The services' pprof endpoints are added to any --pprof given and fetched back to
    back (a fetch every pprof_seconds, each profiling that long), so every slow request
    of the canary's window has had its CPU samples taken when its trace id is followed.
    """
    return dataclasses.replace(
        settings,
        prometheus_url=ep.prometheus_url,
        ifaces=ep.ifaces,
        pprof_urls=tuple(dict.fromkeys(settings.pprof_urls + tuple(ep.pprof_urls.values()))),
        pprof_every=settings.pprof_seconds if ep.pprof_urls else settings.pprof_every,
        rollout_controller="haproxy",
        rollout_service=ep.service,  # and so the canary's name (no services file)
        rollout_haproxy_socket=ep.haproxy_socket,
        rollout_haproxy_backend=ep.haproxy_backend,
        rollout_haproxy_canary=(ep.haproxy_servers["canary"],),
        rollout_haproxy_stable=(ep.haproxy_servers["stable"],),
    )
