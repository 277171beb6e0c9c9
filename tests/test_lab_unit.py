"""Lab pieces without the lab: knob parsing, configs, state file, runtime API parsing, service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.request

import pytest
from conftest import need

from ebpftop.cli.main import main as cli_main
from ebpftop.collectors.profiles import pprof
from ebpftop.collectors.profiles.model import tag
from ebpftop.lab import gobuild, haproxy, prometheus, state
from ebpftop.lab.errors import LabError
from ebpftop.lab.knobs import Knobs, parse_terms
from ebpftop.lab.layout import LabConfig, Layout
from ebpftop.lab.loadgen import Summary

# ------------------------------------------------------------------------- knobs


def test_knob_terms_parse_to_values():
    k = parse_terms(["latency=300ms", "errors=2%", "cpu=on"])
    assert k == Knobs(latency_s=0.3, error_ratio=0.02, cpu=True)
    assert parse_terms(["latency=1.5s"]) == Knobs(latency_s=1.5)


def test_knobs_not_named_keep_their_current_value():
    current = Knobs(latency_s=0.3, error_ratio=0.1, cpu=True)
    assert parse_terms(["cpu=off"], current) == Knobs(latency_s=0.3, error_ratio=0.1, cpu=False)
    assert parse_terms(["reset"], current) == Knobs()


@pytest.mark.parametrize(
    "term, knob, allowed",
    [
        ("latency=fast", "latency", "duration"),
        ("latency=11s", "latency", "duration"),
        ("latency=-5ms", "latency", "duration"),
        ("errors=2", "errors", "percentage"),
        ("errors=101%", "errors", "percentage"),
        ("cpu=yes", "cpu", "on or off"),
    ],
)
def test_bad_knob_value_names_the_knob_and_allowed_values(term, knob, allowed):
    with pytest.raises(LabError) as exc:
        parse_terms([term])
    assert f"knob {knob}" in str(exc.value) and allowed in str(exc.value)


@pytest.mark.parametrize(
    "terms, words",
    [
        (["colour=red"], ["unknown knob 'colour'", "latency=", "errors=", "cpu="]),
        (["latency"], ["not knob=value"]),
        (["cpu=on", "cpu=off"], ["given twice"]),
        (["reset", "cpu=on"], ["reset stands alone"]),
        ([], ["nothing to inject"]),
    ],
)
def test_malformed_inject_terms_are_refused(terms, words):
    with pytest.raises(LabError) as exc:
        parse_terms(terms)
    for w in words:
        assert w in str(exc.value)


def test_cli_inject_with_bad_argument_exits_2_and_names_the_knob(capsys):
    # Refused before the lab is even looked up: nothing is sent anywhere.
    code = cli_main(["lab", "inject", "canary", "errors=lots", "--instance", "zz"])
    err = capsys.readouterr().err
    assert code == 2
    assert "errors" in err and "percentage" in err


def test_cli_inject_unknown_variant_lists_the_variants(capsys):
    assert cli_main(["lab", "inject", "blue", "cpu=on", "--instance", "zz"]) == 2
    assert "stable, canary" in capsys.readouterr().err


def test_knobs_from_untrusted_json_are_validated():
    assert Knobs.from_dict({"latency_s": 0.2, "error_ratio": 0.5, "cpu": True}) == Knobs(0.2, 0.5, True)
    for bad in ({"latency_s": 99}, {"error_ratio": 2}, {"cpu": "yes"}, {"latency_s": True}, {"x": 1}, []):
        with pytest.raises(ValueError):
            Knobs.from_dict(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ layout


def test_layout_names_fit_linux_limits_and_stay_in_the_subnet():
    lay = Layout(LabConfig(name="abcd", subnet="198.18.7.0/24"))
    assert all(len(name) <= 15 for name in lay.links)
    assert lay.addr("stable") == "198.18.7.31" and lay.cidr("bridge") == "198.18.7.1/24"
    assert lay.prometheus_url.startswith("http://127.0.0.1:")
    assert Layout(LabConfig()).state_file == "/run/ebpftop/lab/state.json"
    assert Layout(LabConfig(name="t")).state_file != Layout(LabConfig()).state_file


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"name": "toolong"}, "name"),
        ({"name": "A!"}, "name"),
        ({"subnet": "8.8.8.0/24"}, "private"),
        ({"subnet": "10.0.0.0/16"}, "/24"),
        ({"subnet": "nonsense"}, "subnet"),
        ({"prometheus_port": 70000}, "prometheus_port"),
        ({"rate": 0}, "rate"),
        ({"weights": (0, 0)}, "weights"),
        ({"weights": (300, 1)}, "weights"),
    ],
)
def test_bad_lab_config_is_refused_naming_the_field(kw, words):
    with pytest.raises(LabError) as exc:
        LabConfig(**kw).validate()
    assert exc.value.part == "config" and words in str(exc.value)


# ------------------------------------------------------------------------ configs


def test_prometheus_config_scrapes_every_second_and_names_variants():
    cfg = json.loads(
        prometheus.render_config(
            services={"stable": "198.18.0.31:8000", "canary": "198.18.0.32:8000"},
            haproxy="198.18.0.20:8404",
        ).split("\n", 1)[1]
    )
    assert cfg["global"]["scrape_interval"] == "1s"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    variants = {sc["labels"]["variant"]: sc["targets"] for sc in jobs["lab-service"]["static_configs"]}
    assert variants == {"stable": ["198.18.0.31:8000"], "canary": ["198.18.0.32:8000"]}
    assert jobs["haproxy"]["static_configs"][0]["targets"] == ["198.18.0.20:8404"]
    argv = prometheus.command("prometheus", config_file="c", data_dir="/tmp/d", port=19999)
    assert "--enable-feature=exemplar-storage" in argv and "--web.listen-address=127.0.0.1:19999" in argv


def test_haproxy_config_has_weights_admin_socket_and_exporter():
    text = haproxy.render_config(
        lb_addr="198.18.0.20",
        app_port=8080,
        stats_port=8404,
        socket_path="/x/h.sock",
        pid_file="/x/h.pid",
        servers={"stable": "a:1", "canary": "b:1"},
        weights={"stable": 90, "canary": 10},
    )
    assert "stats socket /x/h.sock mode 600 level admin" in text
    assert "server stable a:1 weight 90" in text and "server canary b:1 weight 10" in text
    assert "use-service prometheus-exporter if { path /metrics }" in text


# --------------------------------------------------------------------- state file


def test_state_file_round_trips_and_is_replaced_atomically(tmp_path):
    path = str(tmp_path / "lab" / "state.json")
    st = state.LabState(
        name="t",
        config={"name": "t"},
        tmpdir="/tmp/x",
        namespaces=["ebt-t-lb"],
        processes=[state.ProcRecord("haproxy", 123, 1.5, ["haproxy"], "/tmp/x/h.log", "ebt-t-lb")],
    )
    state.save(path, st)
    assert state.load(path) == st
    assert os.listdir(tmp_path / "lab") == ["state.json"]  # no temp file left behind
    assert state.remove(path) and not state.remove(path)
    assert state.load(path) is None


def test_corrupt_state_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(state.StateFileError) as exc:
        state.load(str(path))
    assert str(path) in str(exc.value)


# ---------------------------------------------------------------- HAProxy runtime API

SHOW_SERVERS = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
srv_check_addr srv_agent_addr srv_agent_port
3 be_app 1 stable 198.18.0.31 2 0 90 90 20 15 3 2 6 0 0 0 - 8000 - 0 0 - - 0
3 be_app 2 canary 198.18.0.32 0 1 7 10 20 15 3 2 6 0 0 0 - 8000 - 0 0 - - 0

"""


class FakeRuntimeSocket:
    """A unix socket answering like HAProxy's runtime API (one command, then close)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="ebpftop-test-")
        self.path = os.path.join(self.dir, "h.sock")
        self.answers = answers
        self.received: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                line = conn.makefile().readline().strip()
                self.received.append(line)
                conn.sendall(self.answers.get(line, "Unknown command.\n").encode())

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def fake_runtime():
    fake = FakeRuntimeSocket(
        {
            "show servers state be_app": SHOW_SERVERS,
            "show servers state nope": "Can't find backend.\n",
            "set server be_app/canary weight 20": "\n",
            "set server be_app/ghost weight 20": "No such server.\n",
        }
    )
    yield fake
    fake.close()


def test_servers_state_is_parsed_by_its_header(fake_runtime):
    api = haproxy.RuntimeAPI(fake_runtime.path)
    stable, canary = api.servers_state("be_app")
    assert (stable.name, stable.addr, stable.port, stable.op_state, stable.weight) == (
        "stable",
        "198.18.0.31",
        8000,
        "running",
        90,
    )
    assert (canary.op_state, canary.admin_state, canary.weight, canary.initial_weight) == (
        "stopped",
        1,
        7,
        10,
    )
    assert api.weights() == {"stable": 90, "canary": 7}


def test_runtime_api_errors_carry_haproxys_reason(fake_runtime):
    api = haproxy.RuntimeAPI(fake_runtime.path)
    api.set_weight("be_app", "canary", 20)
    assert fake_runtime.received[-1] == "set server be_app/canary weight 20"
    with pytest.raises(haproxy.RuntimeAPIError, match="No such server"):
        api.set_weight("be_app", "ghost", 20)
    with pytest.raises(haproxy.RuntimeAPIError, match="Can't find backend"):
        api.servers_state("nope")
    sent = len(fake_runtime.received)
    with pytest.raises(haproxy.RuntimeAPIError, match="0-256"):
        api.set_weight("be_app", "canary", 999)
    with pytest.raises(haproxy.RuntimeAPIError, match="one command"):
        api.command("show info; shutdown frontend fe_app")
    assert len(fake_runtime.received) == sent  # refused before anything was sent


def test_runtime_api_unreachable_socket_names_the_path(tmp_path):
    with pytest.raises(haproxy.RuntimeAPIError, match=str(tmp_path)):
        haproxy.RuntimeAPI(str(tmp_path / "missing.sock")).weights()


# ---------------------------------------------------------------------- the service


@pytest.fixture(scope="module")
def goservice_binary(tmp_path_factory):
    """The lab's Go service, built as `lab up` builds it (cached under the lab's state dir
    when we may write there, as the integration tests' labs share it)."""
    need(shutil.which("go") is not None, "needs a Go toolchain (apt-get install golang-go)")
    state_dir = LabConfig().state_dir if os.geteuid() == 0 else str(tmp_path_factory.mktemp("lab-state"))
    return gobuild.build(state_dir)


@pytest.fixture
def service(goservice_binary):
    """The real service on loopback (no namespace): -base-latency-ms 0, no natural work."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [goservice_binary, "-listen", f"127.0.0.1:{port}", "-version", "v9", "-track", "canary"]
    proc = subprocess.Popen(
        [*argv, "-service", "checkout", "-base-latency-ms", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("serving canary v9 on 127.0.0.1:")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def _put_knobs(base: str, body: bytes) -> int:
    req = urllib.request.Request(base + "/-/knobs", data=body, method="PUT")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def test_service_metrics_carry_variant_labels_and_trace_id_exemplars(service):
    code, body, headers = _get(service + "/api/items")
    assert code == 200
    answer = json.loads(body)
    trace_id = answer["trace_id"]
    assert headers["Traceparent"] == f"00-{trace_id}-{answer['span_id']}-01"
    _, metrics, headers = _get(service + "/metrics", {"Accept": OPENMETRICS_ACCEPT})
    text = metrics.decode()
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert 'http_requests_total{code="200",track="canary",version="v9"} 1\n' in text
    assert f'# {{trace_id="{trace_id}"}}' in text
    assert 'http_request_duration_seconds_count{track="canary",version="v9"} 1\n' in text
    assert text.endswith("# EOF\n")
    _, plain, headers = _get(service + "/metrics")  # text 0.0.4: no exemplars
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "trace_id" not in plain.decode() and "# TYPE http_requests_total counter" in plain.decode()


def test_service_knobs_change_answers_and_bad_knobs_change_nothing(service):
    assert _put_knobs(service, json.dumps({"error_ratio": 1.0}).encode()) == 200
    assert _get(service + "/api/items")[0] == 500
    assert _get(service + "/healthz")[0] == 200  # health checks stay green whatever the knobs
    for bad in (b'{"error_ratio": 7}', b"not json", b'{"cpu": 1}', b'{"latency_s": 11}', b'{"x": 1}', b""):
        assert _put_knobs(service, bad) == 400, bad
    assert Knobs.from_dict(json.loads(_get(service + "/-/knobs")[1])) == Knobs(error_ratio=1.0)
    _, metrics, _ = _get(service + "/metrics")
    assert 'http_requests_total{code="500",track="canary",version="v9"} 1\n' in metrics.decode()


def test_a_requests_cpu_samples_carry_its_trace_id_through_ebpftops_pprof_reader(service):
    """cpu=on: each request burns ~50 ms in main.cpuHeavyPath inside pprof.Do; the profile
    ebpftop reads names the request by the trace id it answered with."""
    assert _put_knobs(service, json.dumps({"cpu": True}).encode()) == 200
    traces: dict[str, str] = {}
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            answer = json.loads(_get(service + "/api/checkout")[1])
            traces[answer["trace_id"]] = answer["span_id"]

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        prof = asyncio.run(pprof.fetch_profile(service + "/debug/pprof", seconds=2, timeout=10))
    finally:
        stop.set()
        worker.join()
    hot = [s for s in prof.stacks if "main.cpuHeavyPath" in s.frames]
    assert sum(s.count for s in hot) >= 10  # ~2 s of one busy core at 100 Hz
    for s in hot:
        trace = tag(s.tags, "trace_id")
        assert trace in traces and tag(s.tags, "span_id") == traces[trace]
        assert (tag(s.tags, "service"), tag(s.tags, "track"), tag(s.tags, "version")) == (
            "checkout",
            "canary",
            "v9",
        )


def test_loadgen_summaries_say_when_requests_fail():
    first = Summary.parse("sent=100 ok=100 http_errors=0 failed=0 skipped=0 inflight=1 codes=-")
    second = Summary.parse("sent=200 ok=150 http_errors=45 failed=5 skipped=0 inflight=2 codes=500:5,503:40")
    assert first is not None and second is not None and first.failing() == ""
    last = second.since(first)
    assert (last.sent, last.ok, last.failed, last.codes) == (100, 50, 5, {500: 5, 503: 40})
    assert last.failing() == "5 without an answer, 40 answered by HAProxy with 502/503/504"
    assert last.describe() == "100 sent, 50 ok, 5 failed (no connection or no answer), HTTP 500 x5, 503 x40"
    # answers of the services themselves (an injected error ratio) are said, not a failure
    third = Summary.parse(
        "stopped: sent=300 ok=240 http_errors=55 failed=5 skipped=0 inflight=0 codes=500:15,503:40"
    )
    assert third is not None and third.since(second).failing() == ""
    nothing = Summary(sent=20, ok=0, codes={500: 20})
    assert nothing.failing() == "none succeeded"
    assert Summary.parse("load: 20 req/s against http://x/") is None


def test_the_lab_names_its_service_checkout_for_the_canary_and_the_rollout():
    from ebpftop.collectors.canary.collector import services_from
    from ebpftop.core.settings import Settings
    from ebpftop.lab.manager import LabEndpoints, wire_settings

    servers = {"canary": "canary", "stable": "stable"}
    ep = LabEndpoints(
        "http://127.0.0.1:1", ("veth0",), "/run/h.sock", "be_app", servers, {}, (), service="checkout"
    )
    s = wire_settings(Settings(), ep)
    assert s.rollout_service == "checkout"  # what the rollback asks to be typed
    assert s.pprof_urls == ()  # no services' pprof named: none added
    assert [svc.name for svc in services_from(s)] == ["checkout"]  # what the canary pane names
    # outside the lab, nothing is renamed
    assert [svc.name for svc in services_from(Settings())] == ["default"]


def test_lab_wiring_adds_the_services_pprof_fetched_back_to_back():
    from ebpftop.core.settings import Settings
    from ebpftop.lab.manager import LabEndpoints, wire_settings

    lay = Layout(LabConfig())
    pprof_urls = {v: lay.pprof_url(v) for v in ("stable", "canary")}
    servers = {"canary": "canary", "stable": "stable"}
    ep = LabEndpoints(
        "http://127.0.0.1:1", (), "/run/h.sock", "be_app", servers, {}, (), pprof_urls=pprof_urls
    )
    s = wire_settings(Settings(pprof_urls=("http://127.0.0.1:6060",), pprof_seconds=7), ep)
    assert s.pprof_urls == (
        "http://127.0.0.1:6060",
        "http://198.18.0.31:8000/debug/pprof",
        "http://198.18.0.32:8000/debug/pprof",
    )
    assert s.pprof_every == 7  # a fetch starts as the last one ends: no gap in the samples
    assert pprof.profile_url(s.pprof_urls[2], 7) == "http://198.18.0.32:8000/debug/pprof/profile?seconds=7"
