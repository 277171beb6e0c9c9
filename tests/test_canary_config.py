"""Canary service definitions: templates, placeholders, the services file, settings."""

from __future__ import annotations

import pytest

from ebpftop.collectors.canary.collector import CanaryCollector, services_from
from ebpftop.collectors.canary.config import (
    CanaryConfigError,
    ServiceConfig,
    check_template,
    fill,
    load_services_file,
    parse_services,
)
from ebpftop.collectors.canary.verdict import Thresholds
from ebpftop.core.collector import SourceUnavailable
from ebpftop.core.config import ConfigError, load_settings
from ebpftop.core.settings import Settings

T = Thresholds()


def test_default_templates_render_to_the_conventional_queries():
    svc = ServiceConfig(selector='job="shop"')
    assert svc.render("p99", "canary", "version") == (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{version="canary",job="shop"}[1m])))'
    )
    assert svc.render("error_ratio", "stable", "track") == (
        '(sum(rate(http_requests_total{track="stable",job="shop",code=~"5.."}[1m])) or vector(0))'
        ' / sum(rate(http_requests_total{track="stable",job="shop"}[1m]))'
    )
    assert svc.variant_labels() == ("version", "track")
    assert ServiceConfig(variant_label="rev").variant_labels() == ("rev",)


def test_placeholders_inside_string_literals_are_left_alone():
    assert (
        fill('m{$variant, path="/$variant"}[$window]', variant='v="1"', window="5m")
        == 'm{v="1", path="/$variant"}[5m]'
    )
    assert fill("m{${variant}}", variant="a") == "m{a}"


def test_label_values_are_escaped_in_the_selector():
    svc = ServiceConfig(canary='we"ird\\')
    assert svc.matchers("canary", "version") == 'version="we\\"ird\\\\"'


@pytest.mark.parametrize(
    "template,reason",
    [
        ("sum(rate(x{$variant}[$window])", "unclosed '(' at column 4"),
        ("sum(rate(x{$variant}[$window])))", "unexpected ')' at column 32"),
        ('x{$variant,code="5..}', "unterminated string starting at column 17"),
        ("x{$variant}[$windwo]", "unknown placeholder $windwo at column 13"),
        ("sum(rate(http_requests_total[1m]))", "names no variant"),
        ('x{code="$variant"}', "names no variant"),  # inside a string it is just text
        ("   ", "is empty"),
    ],
)
def test_broken_templates_are_named_with_the_problem(template, reason):
    assert reason in check_template(template)


def test_good_templates_pass_the_local_check():
    for name, template in ServiceConfig().templates().items():
        assert check_template(template) is None, name


def test_a_broken_template_is_reported_with_service_and_template_named():
    with pytest.raises(CanaryConfigError) as exc:
        parse_services(
            [{"name": "checkout", "p99_query": "histogram_quantile(0.99, x{$variant}"}], "f.toml", T
        )
    msg = str(exc.value)
    assert "f.toml [[service]] #1" in msg
    assert "canary service 'checkout'" in msg
    assert "template p99" in msg and "unclosed '('" in msg


def test_a_template_without_variant_is_reported():
    with pytest.raises(CanaryConfigError) as exc:
        parse_services(
            [{"name": "api", "throughput_query": "sum(rate(http_requests_total[1m]))"}], "f.toml", T
        )
    assert "canary service 'api', template throughput" in str(exc.value)
    assert "names no variant" in str(exc.value)


@pytest.mark.parametrize(
    "table,needle",
    [
        ({}, "service needs a name"),
        ({"name": "a", "selectr": 'job="x"'}, "unknown key 'selectr'"),
        ({"name": "a", "selector": "job=x"}, "selector 'job=x' must be label matchers"),
        ({"name": "a", "window": "1 minute"}, "window '1 minute' must be a Prometheus duration"),
        ({"name": "a", "variant_label": "ver-sion"}, "is not a label name"),
        ({"name": "a", "canary": "v2", "stable": "v2"}, "they must differ"),
        ({"name": "a", "p99_max": "fast"}, "p99_max must be a number"),
        ({"name": "a", "p99_max": -1}, "p99_max must be a finite number > 0"),
        ({"name": "a", "breaches_to_fail": 0}, "breaches_to_fail must be a whole number from 1 to 1000"),
        ({"name": "a", "selector": 3}, "selector must be a string"),
    ],
)
def test_bad_service_tables_name_the_key(table, needle):
    with pytest.raises(CanaryConfigError) as exc:
        parse_services([table], "svc.toml", T)
    assert needle in str(exc.value)
    assert str(exc.value).startswith("svc.toml [[service]] #1")


def test_services_file_with_overrides(tmp_path):
    f = tmp_path / "services.toml"
    f.write_text(
        '[[service]]\nname = "checkout"\nselector = \'job="checkout"\'\nvariant_label = "track"\n'
        "p99_max = 0.5\nbreaches_to_fail = 5\n\n"
        '[[service]]\nname = "search"\ncanary = "v2"\nstable = "v1"\nwindow = "5m"\n'
    )
    a, b = load_services_file(f, T, window="2m")
    assert a.name == "checkout" and a.variant_label == "track" and a.window == "2m"
    assert a.thresholds.p99_max_s == 0.5 and a.thresholds.persist == 5
    assert a.thresholds.error_ratio_max == T.error_ratio_max
    assert b.window == "5m" and b.matchers("canary", "version") == 'version="v2"'


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "no [[service]] tables"),
        ("[[service]]\nname = 'a'\n[[service]]\nname = 'a'\n", "service 'a' is defined twice"),
        ("service = 3", "no [[service]] tables"),
        ("[[service]\n", "invalid TOML"),
        ("[other]\n", "unknown key 'other'"),
    ],
)
def test_services_file_errors_name_the_file(tmp_path, text, needle):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(CanaryConfigError) as exc:
        load_services_file(f, T)
    assert str(exc.value).startswith(str(f))
    assert needle in str(exc.value)


def test_missing_services_file(tmp_path):
    with pytest.raises(CanaryConfigError, match="no such file"):
        load_services_file(tmp_path / "nope.toml", T)


def test_thresholds_come_from_the_config_file_and_flags_win(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[canary]\nprometheus_url = "http://127.0.0.1:9090"\np99_max = 0.8\nerror_ratio_max = 0.01\n'
        'breaches_to_fail = 4\nevaluation_window = "2m"\n'
    )
    s = load_settings({"canary_p99_max": 2.0}, cfg, env={}, system_file=None, user_file=None)
    assert (s.canary_p99_max, s.canary_error_ratio_max, s.canary_persist, s.canary_window) == (
        2.0,
        0.01,
        4,
        "2m",
    )
    (svc,) = services_from(s)
    assert svc.window == "2m"
    assert svc.thresholds == Thresholds(p99_max_s=2.0, error_ratio_max=0.01, p99_ratio_max=1.2, persist=4)


def test_bad_window_in_config_is_a_config_error(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[canary]\nevaluation_window = "one minute"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings({}, cfg, env={}, system_file=None, user_file=None)
    assert "canary.evaluation_window" in str(exc.value) and "Prometheus duration" in str(exc.value)


async def test_not_configured_is_off_with_a_hint():
    c = CanaryCollector(Settings())
    with pytest.raises(SourceUnavailable) as exc:
        await c.start()
    assert exc.value.off is True
    assert "--prometheus-url" in exc.value.hint


async def test_a_bad_services_file_stops_the_source_at_start_naming_it(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[[service]]\nname = "pay"\nerror_ratio_query = "sum(rate(x[1m])"\n')
    c = CanaryCollector(Settings(prometheus_url="http://127.0.0.1:9", canary_services_file=str(f)))
    with pytest.raises(SourceUnavailable) as exc:
        await c.start()
    assert exc.value.off is False
    assert "canary service 'pay', template error_ratio" in exc.value.message


async def test_unreadable_token_file_is_reported_with_the_file(tmp_path):
    c = CanaryCollector(
        Settings(prometheus_url="http://127.0.0.1:9", prometheus_token_file=str(tmp_path / "tok"))
    )
    with pytest.raises(SourceUnavailable) as exc:
        await c.start()
    assert str(tmp_path / "tok") in exc.value.message and "bearer_token_file" in exc.value.hint


def test_command_line_flags_override_the_file(tmp_path):
    from ebpftop.cli.main import build_parser
    from ebpftop.cli.options import settings_from_args

    cfg = tmp_path / "config.toml"
    cfg.write_text("[canary]\np99_max = 0.8\nbreaches_to_fail = 4\n")
    args = build_parser().parse_args(
        ["--config", str(cfg), "--canary-p99-max", "0.3", "--canary-window", "5m"]
    )
    s = settings_from_args(args)
    assert (s.canary_p99_max, s.canary_persist, s.canary_window) == (0.3, 4, "5m")


def test_a_bad_flag_value_is_a_config_error_naming_the_flag(tmp_path):
    from ebpftop.cli.main import build_parser
    from ebpftop.cli.options import settings_from_args

    cfg = tmp_path / "config.toml"
    cfg.write_text("")
    args = build_parser().parse_args(["--config", str(cfg), "--canary-persist", "0"])
    with pytest.raises(ConfigError) as exc:
        settings_from_args(args)
    assert "--canary-persist" in str(exc.value)
