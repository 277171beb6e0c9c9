"""Alarms as pure functions of snapshots (core/alarms.py and each source's rule beside its
payload model): health alarms, a failing canary judged by the real Evaluator, rules whose
kernel maps and book disagree, flows drop counters that are growing. The dashboard's
header and `snapshot --json` both show exactly these."""

from __future__ import annotations

from dataclasses import replace

from ebpftop.collectors.canary.data import CanaryData, DriftTest, ServiceCanary, VariantMetrics, canary_alarms
from ebpftop.collectors.canary.verdict import Evaluator, Measured, Thresholds, Verdict
from ebpftop.collectors.flows.model import GROWING_FOR, FlowsData, IfaceStatus, flows_alarms
from ebpftop.collectors.rules.model import RuleRecord, RulesData, rules_alarms
from ebpftop.core.alarms import Alarm, alarms, data_alarms, health_alarm, register_alarms, source_alarms
from ebpftop.core.codec import to_jsonable
from ebpftop.core.model import NO_DATA_YET, Health, HealthState, Snapshot
from ebpftop.core.store import Store, last_good

T = 1_700_000_000.0


def ok(t: float) -> Health:
    return Health(HealthState.OK, "", "", t, 0)


def snap(source: str, data, t: float = T, seq: int = 1, health: Health | None = None) -> Snapshot:
    return Snapshot(source, seq, t, health or ok(t), data)


# --- health ---------------------------------------------------------------------------


def test_down_is_an_error_degraded_a_warning_ok_and_off_nothing():
    down = snap(
        "flows", None, health=Health(HealthState.DOWN, "BPF unavailable: needs root", "run with sudo")
    )
    alarm = source_alarms(down, (down,), T + 5)[0]
    assert alarm == Alarm(
        "flows",
        "error",
        "flows down: BPF unavailable: needs root",
        "down",
        {
            "state": "down",
            "message": "BPF unavailable: needs root",
            "hint": "run with sudo",
            "errors": 0,
            "last_good_age_s": None,
            "stale": False,
        },
    )
    degraded = snap(
        "profiles", None, health=Health(HealthState.DEGRADED, "perf_event_open failed", "", T - 40, 2)
    )
    alarm = health_alarm("profiles", degraded.health, T)
    assert (alarm.severity, alarm.kind, alarm.detail["last_good_age_s"]) == ("warning", "degraded", 40.0)
    assert source_alarms(snap("host", object()), (), T) == ()
    off = snap("canary", None, health=Health(HealthState.OFF, "Prometheus not configured"))
    assert health_alarm("canary", off.health, T) is None


def test_a_source_that_fails_after_delivering_is_stale_and_keeps_its_last_good_data():
    good = snap("rules", RulesData((), 0, (), 1, 256), T, 1)
    failed = snap("rules", None, T + 9, 2, Health(HealthState.DOWN, "map gone", "", T, 1))
    assert last_good(failed, (good, failed)) is good
    assert last_good(good, (good,)) is good
    assert last_good(failed, (failed,)) is None
    (alarm,) = source_alarms(failed, (good, failed), T + 10)
    assert alarm.detail["stale"] is True and alarm.detail["last_good_age_s"] == 10.0
    store = Store()
    store.put(good)
    store.put(failed)
    assert store.last_good("rules") is good
    assert store.health("nothing") is NO_DATA_YET


def test_only_current_data_raises_data_alarms_and_a_failing_rule_raises_nothing():
    bad = RulesData((), 0, (), 1, 256, problem="rule 3 in the kernel, not in the book")
    failed = snap("rules", None, T + 1, 2, Health(HealthState.DOWN, "map gone"))
    # Stale data has its health alarm, not its data alarms.
    assert [a.kind for a in source_alarms(failed, (snap("rules", bad), failed), T + 2)] == ["down"]

    def broken(latest, history):
        raise KeyError("field")

    register_alarms("broken-test-source", broken)
    assert data_alarms(snap("broken-test-source", {"x": 1}), ()) == ()


# --- canary ---------------------------------------------------------------------------


def service(name: str, evaluator: Evaluator, error_ratio: float) -> ServiceCanary:
    """A service judged by the real evaluator (the collector's own verdict code)."""
    a = evaluator.evaluate(Measured(0.2, 0.2, error_ratio, 1000.0, None, "no histogram"))
    return ServiceCanary(
        name,
        a.verdict,
        a.reason,
        a.metrics,
        VariantMetrics("canary", 0.2, error_ratio, 10.0),
        VariantMetrics("stable", 0.2, 0.0, 90.0),
        DriftTest("chi-square test of homogeneity", note="no histogram"),
    )


def test_canary_fail_is_an_error_warn_a_warning_pass_nothing():
    thresholds = Thresholds(persist=2)
    failing, warning, passing = Evaluator(thresholds), Evaluator(thresholds), Evaluator(thresholds)
    service("checkout", failing, 0.02)  # a first breach: WARN
    data = CanaryData(
        "http://127.0.0.1:9090",
        (service("checkout", failing, 0.02), service("search", warning, 0.02), service("web", passing, 0.0)),
    )
    assert [s.verdict for s in data.services] == [Verdict.FAIL, Verdict.WARN, Verdict.PASS]
    out = canary_alarms(snap("canary", data), ())
    assert [(a.text, a.severity) for a in out] == [
        ("canary FAIL checkout: 5xx 2% (2/2)", "error"),
        ("canary WARN search: 5xx 2% (1/2)", "warning"),
    ]
    assert out[0].detail == {
        "service": "checkout",
        "verdict": "fail",
        "reason": "canary 5xx ratio 2% > 0.5% for 2/2 evaluations",
        "metrics": ["error_ratio"],
    }
    assert to_jsonable(out[0])["detail"]["metrics"] == ["error_ratio"]


def judged(evaluator: Evaluator, m: Measured, name: str = "checkout", **kw) -> ServiceCanary:
    a = evaluator.evaluate(m, **kw)
    return ServiceCanary(
        name,
        a.verdict,
        a.reason,
        a.metrics,
        VariantMetrics("canary"),
        VariantMetrics("stable"),
        DriftTest("chi-square test of homogeneity"),
    )


def alarm_text(*services: ServiceCanary) -> list[str]:
    return [a.text for a in canary_alarms(snap("canary", CanaryData("http://p", services)), ())]


def test_the_canary_alarm_names_every_breach_in_a_few_words():
    ev = Evaluator(Thresholds(persist=3))
    bad = Measured(1.5, 0.0658, 0.051, 1000.0, None, "no histogram")  # p99 1.5 s = 22.8x stable
    judged(ev, bad, history_at=100.0)
    judged(ev, bad, history_at=105.0)
    # all three breach, for as long: one count for all, and how much of it is history
    assert alarm_text(judged(ev, bad)) == [
        "canary FAIL checkout: p99 1.5 s, 22.8x stable, 5xx 5.1% (3/3, 2 from history)"
    ]
    # breaches held for different counts carry their own; the failing ones come first
    ev = Evaluator(Thresholds(persist=3))
    for _ in range(3):
        judged(ev, Measured(0.3, 0.28, 0.051, 1000.0, None, "no histogram"))
    mixed = judged(ev, Measured(0.9, 0.28, 0.051, 1000.0, None, "no histogram"))
    assert alarm_text(mixed) == ["canary FAIL checkout: 5xx 5.1% (3/3), p99 3.21x stable (1/3)"]


def test_a_canary_warning_only_on_the_distribution_says_so_briefly():
    from ebpftop.collectors.canary.stats import chi_square_homogeneity

    shifted = chi_square_homogeneity([100, 150, 300, 450], [500, 300, 150, 50])
    svc = judged(Evaluator(Thresholds()), Measured(0.3, 0.28, 0.001, 1000.0, shifted))
    assert svc.verdict is Verdict.WARN
    (text,) = alarm_text(svc)
    assert text == "canary WARN checkout: latency distribution differs (V 0.586)"


# --- rules ----------------------------------------------------------------------------


def test_rules_disagreeing_with_the_kernel_is_an_error():
    rec = RuleRecord(1, 0, "deny", "dport 22", 0, 0, None, None, None, "ops", T, None, False)
    fine = RulesData((rec,), 1, ("eth0 ingress",), 7, 256)
    assert rules_alarms(snap("rules", fine), ()) == []
    bad = replace(fine, problem="rule 2 in the kernel but not in the metadata")
    assert rules_alarms(snap("rules", bad), ()) == [
        Alarm(
            "rules",
            "error",
            "rules: kernel and metadata disagree",
            "rules_disagree",
            {"problem": "rule 2 in the kernel but not in the metadata"},
        )
    ]


# --- flows ----------------------------------------------------------------------------


def flows(**changes) -> FlowsData:
    base = FlowsData(
        flows=(),
        flows_tracked=0,
        total_bytes=0,
        total_packets=0,
        total_bps=0.0,
        total_pps=0.0,
        evictions=0,
        update_failures=0,
        not_ip_packets=0,
        truncated_packets=0,
        events_total=50,
        lost_events=0,
        tcp_events_error=None,
        ifaces=(IfaceStatus("eth0", 2, "tcx"),),
    )
    return replace(base, **changes)


def test_a_counter_that_grew_recently_is_an_alarm_until_it_rests():
    s1 = snap("flows", flows(), T, 1)
    s2 = snap("flows", flows(lost_events=7, update_failures=3), T + 10, 2)
    history = [s1, s2]
    assert flows_alarms(s1, [s1]) == []
    out = flows_alarms(s2, history)
    assert [(a.text, a.severity) for a in out] == [
        ("flows: not recorded 3 (+3)", "error"),
        ("flows: TCP events lost 7 (+7)", "warning"),
    ]
    assert out[1].detail == {
        "counter": "lost_events",
        "label": "TCP events lost",
        "value": 7,
        "grew_by": 7,
        "grew_at": T + 10,
    }
    # Grows again: by how much since the sample before.
    s3 = snap("flows", flows(lost_events=12_345, update_failures=3), T + 20, 3)
    history.append(s3)
    assert [a.text for a in flows_alarms(s3, history)] == [
        "flows: not recorded 3 (+3)",
        "flows: TCP events lost 12.3k (+12.3k)",
    ]
    # Still the same values GROWING_FOR seconds after they last grew: no longer an alarm.
    s4 = snap("flows", flows(lost_events=12_345, update_failures=3), T + 20 + GROWING_FOR + 1, 4)
    history.append(s4)
    assert flows_alarms(s4, history) == []
    # A fall (the collector restarted) starts again; TCP events off proves nothing.
    s5 = snap("flows", flows(lost_events=None, events_total=None, update_failures=1), s4.time + 1, 5)
    history.append(s5)
    assert flows_alarms(s5, history) == []


def test_alarms_of_a_store_data_first_then_health_down_before_degraded():
    store = Store()
    bad_rules = RulesData((), 0, (), 1, 256, problem="mismatch")
    store.put(snap("rules", bad_rules))
    store.put(snap("flows", None, health=Health(HealthState.DOWN, "no BPF")))
    store.put(snap("profiles", None, health=Health(HealthState.DEGRADED, "EACCES")))
    store.put(snap("canary", None, health=Health(HealthState.DOWN, "Prometheus refused")))
    out = alarms(store.latest, store.history, ("host", "flows", "rules", "canary", "profiles"), T)
    assert [(a.source, a.kind) for a in out] == [
        ("rules", "rules_disagree"),
        ("canary", "down"),
        ("flows", "down"),
        ("profiles", "degraded"),
    ]
