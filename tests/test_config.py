"""Configuration: files < EBPFTOP_* environment < flags, and every bad input named."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import need_root

from ebpftop.cli import options
from ebpftop.core import config
from ebpftop.core.config import ConfigError, load_settings
from ebpftop.core.settings import THEMES, Settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    """A system and a user file path (not created) and a loader bound to them."""
    system, user = tmp_path / "etc" / "config.toml", tmp_path / "home" / "config.toml"

    def load(flags=None, env=None, config_path=None):
        return load_settings(flags or {}, config_path, env=env or {}, system_file=system, user_file=user)

    return system, user, load


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# ---------------------------------------------------------------- precedence


def test_no_files_no_env_no_flags_gives_the_defaults(files):
    _, _, load = files
    assert load() == Settings()


def test_each_layer_overrides_the_one_below(files):
    system, user, load = files
    write(system, '[ui]\ntheme = "ebpftop-light"\nrefresh = 2\nhistory = 50\n[flows]\nifaces = ["sys0"]\n')
    s = load()
    assert (s.theme, s.refresh, s.history, s.ifaces) == ("ebpftop-light", 2.0, 50, ("sys0",))

    write(user, '[ui]\nrefresh = 3.5\nkiosk = true\n[flows]\nifaces = ["usr0", "usr1"]\n')
    s = load()
    # user beats system key by key; keys the user file does not set keep the system value
    assert (s.theme, s.refresh, s.kiosk, s.history, s.ifaces) == (
        "ebpftop-light",
        3.5,
        True,
        50,
        ("usr0", "usr1"),
    )

    env = {"EBPFTOP_REFRESH": "4", "EBPFTOP_IFACES": "eth0, eth1,", "EBPFTOP_KIOSK": "off", "PATH": "/bin"}
    s = load(env=env)
    assert (s.refresh, s.ifaces, s.kiosk, s.history) == (4.0, ("eth0", "eth1"), False, 50)

    s = load(env=env, flags={"refresh": 5.0, "ifaces": ("lo",), "kiosk": True})
    assert (s.refresh, s.ifaces, s.kiosk, s.theme) == (5.0, ("lo",), True, "ebpftop-light")


def test_config_path_replaces_both_default_files(files, tmp_path):
    system, user, load = files
    write(system, '[ui]\ntheme = "ebpftop-light"\n')
    write(user, "[ui]\nkiosk = true\n")
    chosen = write(tmp_path / "chosen.toml", "[ui]\nhistory = 7\n")
    s = load(config_path=str(chosen))
    assert (s.theme, s.kiosk, s.history) == ("ebpftop-dark", False, 7)


def test_ebpftop_config_env_picks_the_file_and_the_flag_beats_it(files, tmp_path):
    _, _, load = files
    a = write(tmp_path / "a.toml", "[ui]\nhistory = 11\n")
    b = write(tmp_path / "b.toml", "[ui]\nhistory = 22\n")
    assert load(env={"EBPFTOP_CONFIG": str(a)}).history == 11
    assert load(env={"EBPFTOP_CONFIG": str(a)}, config_path=str(b)).history == 22


def test_a_missing_config_file_given_explicitly_is_an_error(files, tmp_path):
    _, _, load = files
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(missing))
    assert problems(exc) == [f"{missing}: no such file"]


def test_empty_string_unsets_an_optional_setting(files):
    system, _, load = files
    write(system, '[canary]\nprometheus_url = "http://127.0.0.1:9090"\n[record]\npath = "/tmp/x.rec"\n')
    assert load().prometheus_url == "http://127.0.0.1:9090"
    s = load(env={"EBPFTOP_PROMETHEUS_URL": "", "EBPFTOP_RECORD": ""})
    assert (s.prometheus_url, s.record) == (None, None)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_env_booleans(files, text, expected):
    _, _, load = files
    assert load(env={"EBPFTOP_KIOSK": text}).kiosk is expected


def test_section_and_key_names_that_differ_from_the_field(files, tmp_path):
    _, _, load = files
    f = write(
        tmp_path / "c.toml",
        '[record]\npath = "/tmp/r"\nmax_mb = 3\n[audit]\nlog = "/tmp/a"\nkey = "/tmp/k"\n'
        "[lab]\nenabled = true\n",
    )
    s = load(config_path=str(f))
    assert (s.record, s.record_max_mb, s.audit_log, s.audit_key, s.lab) == (
        "/tmp/r",
        3.0,
        "/tmp/a",
        "/tmp/k",
        True,
    )


# ---------------------------------------------------------------- errors in files


@pytest.mark.parametrize(
    "body, key, reason",
    [
        ('[ui]\ntheme = "solarized"', "ui.theme", "must be one of " + ", ".join(THEMES)),
        ("[ui]\ntheme = 3", "ui.theme", "must be a string, got 3"),
        ('[ui]\nkiosk = "yes"', "ui.kiosk", "must be true or false, got 'yes'"),
        ("[ui]\nrefresh = 0", "ui.refresh", "must be > 0 and <= 60, got 0.0"),
        ("[ui]\nrefresh = 61", "ui.refresh", "must be > 0 and <= 60, got 61.0"),
        ("[ui]\nrefresh = nan", "ui.refresh", "must be a finite number"),
        ('[ui]\nrefresh = "1s"', "ui.refresh", "must be a number, got '1s'"),
        ("[ui]\nhistory = 0", "ui.history", "must be >= 1 and <= 100000, got 0"),
        ("[ui]\nhistory = 100001", "ui.history", "must be >= 1 and <= 100000, got 100001"),
        ("[ui]\nhistory = 2.5", "ui.history", "must be a whole number, got 2.5"),
        ("[ui]\nhistory = true", "ui.history", "must be a whole number, got True"),
        ("[record]\nmax_mb = 0", "record.max_mb", "must be > 0, got 0.0"),
        ("[record]\nmax_mb = -5", "record.max_mb", "must be > 0, got -5.0"),
        ('[audit]\nlog = ""', "audit.log", "must not be empty"),
        ('[flows]\nifaces = "eth0"', "flows.ifaces", "must be a list of strings"),
        ('[flows]\nifaces = ["eth0", 1]', "flows.ifaces", "must be a list of strings"),
        ('[flows]\nifaces = ["a/b"]', "flows.ifaces", "is not an interface name"),
        (
            '[canary]\nprometheus_url = "ftp://x:21"',
            "canary.prometheus_url",
            "must be an http:// or https:// URL",
        ),
        ('[canary]\nprometheus_url = "http://"', "canary.prometheus_url", "must name a host"),
        ('[canary]\nprometheus_url = "http://h:99999"', "canary.prometheus_url", "has an invalid port"),
        ("[lab]\nenabled = 1", "lab.enabled", "must be true or false, got 1"),
    ],
)
def test_a_bad_value_names_file_line_key_and_reason(files, tmp_path, body, key, reason):
    _, _, load = files
    f = write(tmp_path / "bad.toml", "# comment\n" + body + "\n")
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    (p,) = exc.value.problems
    assert (p.where, p.key, p.line) == (str(f), key, 3)
    assert reason in p.reason
    assert str(p).startswith(f"{f}:3: {key}: ")


def test_bad_value_in_a_file_is_reported_even_when_a_later_layer_overrides_it(files):
    system, _, load = files
    write(system, "[ui]\nrefresh = -1\n")
    with pytest.raises(ConfigError) as exc:
        load(flags={"refresh": 2.0})
    assert problems(exc) == [f"{system}:2: ui.refresh: must be > 0 and <= 60, got -1.0"]


@pytest.mark.parametrize(
    "body, line, key, hint",
    [
        ('[ui]\nthem = "ebpftop-light"', 3, "ui.them", "unknown key (did you mean ui.theme?)"),
        ("[ui]\nrefrseh = 2", 3, "ui.refrseh", "unknown key (did you mean ui.refresh?)"),
        (
            '[ui]\nprometheus_url = "http://h"',
            3,
            "ui.prometheus_url",
            "unknown key (it belongs in [canary]: canary.prometheus_url)",
        ),
        (
            '[canary]\nprometheus_ulr = "http://h"',
            3,
            "canary.prometheus_ulr",
            "unknown key (did you mean canary.prometheus_url?)",
        ),
        ("[iu]\nkiosk = true", 2, "[iu]", "unknown section (did you mean [ui]?)"),
        ("[flow]\nifaces = []", 2, "[flow]", "unknown section (did you mean [flows]?)"),
        ("[zzzzzz]\nx = 1", 2, "[zzzzzz]", "unknown section"),
        ("theme = 'ebpftop-light'", 2, "theme", "settings belong in a section (did you mean ui.theme?)"),
        ("ui = 1", 2, "ui", "must be a section [ui], not a value"),
    ],
)
def test_unknown_names_are_errors_with_a_suggestion(files, tmp_path, body, line, key, hint):
    _, _, load = files
    f = write(tmp_path / "c.toml", "# comment\n" + body + "\n")
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    assert problems(exc) == [f"{f}:{line}: {key}: {hint}"]


def test_a_syntax_error_names_the_file_and_line(files, tmp_path):
    _, _, load = files
    f = write(tmp_path / "c.toml", "[ui]\nkiosk = true\ntheme = \n")
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    (p,) = exc.value.problems
    assert (p.where, p.line, p.key) == (str(f), 3, None)
    assert p.reason.startswith("invalid TOML: ")
    assert "(at line" not in p.reason  # the line is in the location, not repeated


def test_a_file_that_is_not_utf8_names_the_line(files, tmp_path):
    _, _, load = files
    f = tmp_path / "c.toml"
    f.write_bytes(b"[ui]\n# caf\xe9\nkiosk = true\n")
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    assert problems(exc) == [f"{f}:2: not UTF-8 text"]


def test_a_directory_is_not_a_config_file(files, tmp_path):
    _, _, load = files
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(tmp_path))
    assert problems(exc)[0].startswith(f"{tmp_path}: cannot read: ")


def test_every_problem_in_every_layer_is_reported_at_once(files):
    system, user, load = files
    write(system, "[ui]\nrefresh = 0\nhistory = 0\n")
    write(user, "[ui]\nthme = 'x'\n")
    with pytest.raises(ConfigError) as exc:
        load(env={"EBPFTOP_KIOSK": "maybe"}, flags={"record_max_mb": -1.0})
    where = [(p.where, p.key) for p in exc.value.problems]
    assert where == [
        (str(system), "ui.refresh"),
        (str(system), "ui.history"),
        (str(user), "ui.thme"),
        ("environment EBPFTOP_KIOSK", "ui.kiosk"),
        ("flag --record-max-mb", "record.max_mb"),
    ]
    assert "\n" not in str(exc.value)  # one line: callers print it through text.clean()


# ---------------------------------------------------------------- environment and flags


@pytest.mark.parametrize(
    "var, value, expected",
    [
        (
            "EBPFTOP_KIOSK",
            "maybe",
            "environment EBPFTOP_KIOSK: ui.kiosk: must be 1/0, true/false, yes/no or on/off, got 'maybe'",
        ),
        ("EBPFTOP_REFRESH", "fast", "environment EBPFTOP_REFRESH: ui.refresh: must be a number, got 'fast'"),
        ("EBPFTOP_REFRESH", "inf", "environment EBPFTOP_REFRESH: ui.refresh: must be a finite number"),
        (
            "EBPFTOP_HISTORY",
            "1e3",
            "environment EBPFTOP_HISTORY: ui.history: must be a whole number, got '1e3'",
        ),
        ("EBPFTOP_THEME", "dark", "environment EBPFTOP_THEME: ui.theme: must be one of "),
        (
            "EBPFTOP_PROMETHEUS_URL",
            "localhost:9090",
            "environment EBPFTOP_PROMETHEUS_URL: canary.prometheus_url: must be an http",
        ),
        ("EBPFTOP_THEM", "x", "environment EBPFTOP_THEM: unknown setting (did you mean EBPFTOP_THEME?)"),
    ],
)
def test_a_bad_environment_variable_is_named(files, var, value, expected):
    _, _, load = files
    with pytest.raises(ConfigError) as exc:
        load(env={var: value})
    (msg,) = problems(exc)
    assert msg.startswith(expected)


def test_control_characters_in_values_are_escaped_in_messages(files):
    _, _, load = files
    with pytest.raises(ConfigError) as exc:
        load(env={"EBPFTOP_THEME": "\x1b]0;pwned\x07"})
    assert "\x1b" not in str(exc.value) and "\\x1b" in str(exc.value)


def test_a_bad_flag_is_named(files):
    _, _, load = files
    with pytest.raises(ConfigError) as exc:
        load(flags={"refresh": 0.0})
    assert problems(exc) == ["flag --refresh: ui.refresh: must be > 0 and <= 60, got 0.0"]
    with pytest.raises(ConfigError) as exc:
        load(flags={"ifaces": ("a b",)})
    assert problems(exc)[0].startswith("flag --iface: flows.ifaces: 'a b' is not an interface name")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpftop")
    options.add_global_options(p)
    return p


def test_flags_parse_into_overrides_only_when_given():
    args = parser().parse_args(["--iface", "eth0", "--iface", "eth1", "--kiosk", "--refresh", "2"])
    assert options.flag_overrides(args) == {"ifaces": ("eth0", "eth1"), "kiosk": True, "refresh": 2.0}
    assert options.flag_overrides(parser().parse_args([])) == {}


def test_load_or_exit_prints_each_problem_and_exits_2(tmp_path, capsys, monkeypatch):
    for var in [v for v in os.environ if v.startswith("EBPFTOP_")]:
        monkeypatch.delenv(var)
    f = write(tmp_path / "c.toml", "[ui]\nrefresh = 0\nthem = 'x'\n")
    args = parser().parse_args(["--config", str(f)])
    with pytest.raises(SystemExit) as exc:
        options.load_or_exit(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"ebpftop: {f}:2: ui.refresh: must be > 0 and <= 60, got 0.0",
        f"ebpftop: {f}:3: ui.them: unknown key (did you mean ui.theme?)",
    ]


# ---------------------------------------------------------------- where the user file is


def test_user_file_follows_xdg_then_home():
    assert config.user_config_file({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == Path(
        "/x/cfg/ebpftop/config.toml"
    )
    # a relative XDG_CONFIG_HOME is ignored (XDG spec)
    assert config.user_config_file({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.config/ebpftop/config.toml"
    )
    assert config.user_config_file({"HOME": "/h"}) == Path("/h/.config/ebpftop/config.toml")


def test_under_sudo_the_user_file_is_the_invoking_users():
    need_root()
    nobody = pwd.getpwnam("nobody")
    env = {
        "SUDO_USER": "nobody",
        "SUDO_UID": str(nobody.pw_uid),
        "HOME": "/root",
        "XDG_CONFIG_HOME": "/root/.config",
    }
    assert config.user_config_file(env) == Path(nobody.pw_dir) / ".config" / "ebpftop" / "config.toml"
    # SUDO_UID that does not match SUDO_USER: trust neither
    assert config.user_config_file({**env, "SUDO_UID": str(nobody.pw_uid + 1)}) is None


def test_as_root_a_file_other_users_can_write_is_refused(files, tmp_path):
    need_root()
    _, _, load = files
    f = write(tmp_path / "c.toml", "[ui]\nkiosk = true\n")
    f.chmod(0o646)
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    assert problems(exc) == [f"{f}: refusing to read as root: writable by other users (chmod go-w it)"]
    f.chmod(0o644)
    os.chown(f, 65534, 65534)
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    assert "refusing to read as root: owned by uid 65534" in problems(exc)[0]
    # ...unless that uid is the sudo user's: their own file
    assert load(config_path=str(f), env={"SUDO_UID": "65534"}).kiosk is True


# ---------------------------------------------------------------- the settings table


def test_every_setting_declares_its_section_and_description():
    opts = config.options()
    assert [o.name for o in opts] == [f.name for f in fields(Settings)]
    for o in opts:
        assert o.section != "general", f"{o.name}: declare it with setting(default, section)"
        assert o.doc, f"{o.name}: add a description string under the field"
    paths = [o.path for o in opts]
    assert len(set(paths)) == len(paths)


def test_help_config_is_a_valid_config_file_of_the_defaults(files, tmp_path, capsys):
    _, _, load = files
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["--help-config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "env EBPFTOP_PROMETHEUS_URL, flag --prometheus-url" in out
    assert "flag --history" not in out  # there is no such flag
    tomllib.loads(out)
    f = write(tmp_path / "defaults.toml", out)
    assert load(config_path=str(f)) == Settings()


# ---------------------------------------------------------------- the command line


def run_cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SUDO_", "XDG_"))}
    env["HOME"] = str(tmp_path / "home")
    return subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("verb", [[], ["snapshot", "--json"], ["doctor"]])
def test_bad_config_exits_2_before_touching_anything(tmp_path, verb):
    bad = write(tmp_path / "bad.toml", "[ui]\nrefresh = 0\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    record = tmp_path / "out.rec"
    proc = run_cli(tmp_path, "--config", str(bad), "--record", str(record), *verb)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"ebpftop: {bad}:2: ui.refresh: must be > 0 and <= 60, got 0.0"
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------- URLs and what a setting needs

BAD_URLS = [
    ("http://[::1", "has '[' without ']'"),
    ("http://a]b", "has a bracket outside an IPv6 address"),
    ("http://[x]:9090", "has 'x' in brackets, which is not an IPv6 address"),
    ("http://[1.2.3.4]:80", "which is not an IPv6 address"),
    ("http://[::1]x:80", "has text after ']' that is not :PORT"),
    ("http://::1:9090", "IPv6 address without brackets"),
    ("http://h:0", "has an invalid port"),
    ("http://h:+80", "has an invalid port"),
    ("http://h:\u0663", "has an invalid port"),  # an Arabic-Indic digit: int() would take it
    ("http://a b:90", "must not contain spaces or control characters"),
    ("http://h\n:90", "must not contain spaces or control characters"),
]
URL_SETTINGS = [  # (field, section.key, file value wrapper) for every URL-typed setting
    ("prometheus_url", "canary.prometheus_url", lambda u: u),
    ("rollout_webhook_url", "rollout.webhook_url", lambda u: u),
    ("pprof_urls", "profiles.pprof", lambda u: (u,)),
    ("fleet_url", "fleet.prometheus_url", lambda u: u),
]


def test_every_url_setting_is_checked_by_the_one_url_check():
    from ebpftop.core import settings as settings_module

    for name, path, wrap in URL_SETTINGS:
        opt = next(o for o in config.options() if o.name == name)
        assert opt.path == path
        assert opt.check(wrap("http://[x]:9090")) is not None
    # and no other setting names a URL in its description without being in the list
    urlish = {o.name for o in config.options() if "URL" in o.doc or o.key.endswith(("_url", "pprof"))}
    assert urlish <= {n for n, _, _ in URL_SETTINGS} | {"rollout_controller"}, urlish
    assert settings_module.http_url("http://[::1]:9090") is None
    assert settings_module.http_url("https://user:pw@[fe80::1%eth0]:443/api?x=1") is None


@pytest.mark.parametrize("url, reason", BAD_URLS)
@pytest.mark.parametrize("name, path, wrap", URL_SETTINGS)
def test_a_bad_url_is_a_config_error_in_every_layer(files, tmp_path, name, path, wrap, url, reason):
    _, _, load = files
    section, key = path.split(".")
    value = wrap(url)
    toml = f"[{section}]\n{key} = {json.dumps(value)}\n"  # a JSON string or list is TOML too
    f = write(tmp_path / "c.toml", "# comment\n" + toml)
    env_var = "EBPFTOP_" + name.upper()
    for kwargs, where, line in (
        ({"config_path": str(f)}, str(f), 3),
        ({"env": {env_var: url}}, f"environment {env_var}", None),
        ({"flags": {name: value}}, f"flag {next(o.flag for o in config.options() if o.name == name)}", None),
    ):
        with pytest.raises(ConfigError) as exc:
            load(**kwargs)
        (p,) = exc.value.problems
        assert (p.where, p.key, p.line) == (where, path, line)
        assert reason in p.reason


@pytest.mark.parametrize(
    "argv",
    [
        ["--prometheus-url", "http://[::1"],
        ["--pprof", "http://a]b"],
        ["--prometheus-url", "http://[x]:9090"],
    ],
)
def test_a_bad_url_flag_exits_2_with_one_line_and_no_traceback(tmp_path, argv):
    proc = run_cli(tmp_path, *argv, "snapshot", "--json")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"ebpftop: flag {argv[0]}: ")


def test_a_bad_url_in_the_environment_exits_2_naming_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EBPFTOP_", "SUDO_", "XDG_"))}
    env.update(HOME=str(tmp_path), EBPFTOP_ROLLOUT_WEBHOOK_URL="http://[::1")
    proc = subprocess.run(
        [sys.executable, "-m", "ebpftop.cli.main", "doctor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "ebpftop: environment EBPFTOP_ROLLOUT_WEBHOOK_URL: rollout.webhook_url: has '['"
    )


def test_a_controller_without_its_address_is_a_config_error_where_it_is_chosen(files, tmp_path):
    _, _, load = files
    f = write(tmp_path / "c.toml", '# comment\n[rollout]\nservice = "pay"\ncontroller = "webhook"\n')
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    assert problems(exc) == [f"{f}:4: rollout.controller: 'webhook' needs rollout.webhook_url, not set"]

    with pytest.raises(ConfigError) as exc:
        load(env={"EBPFTOP_ROLLOUT_CONTROLLER": "haproxy"})
    assert problems(exc) == [
        "environment EBPFTOP_ROLLOUT_CONTROLLER: rollout.controller: "
        "'haproxy' needs rollout.haproxy_socket, not set"
    ]
    with pytest.raises(ConfigError) as exc:
        load(flags={"rollout_controller": "webhook"}, env={"EBPFTOP_ROLLOUT_WEBHOOK_URL": ""})
    assert problems(exc) == [
        "flag --rollout-controller: rollout.controller: 'webhook' needs rollout.webhook_url, not set"
    ]


def test_a_controller_with_what_it_needs_from_any_layer_loads(files, tmp_path):
    system, _, load = files
    write(system, '[rollout]\ncontroller = "webhook"\n')
    s = load(env={"EBPFTOP_ROLLOUT_WEBHOOK_URL": "http://[::1]:8080/rollout"})
    assert (s.rollout_controller, s.rollout_webhook_url) == ("webhook", "http://[::1]:8080/rollout")
    assert (
        load(
            flags={"rollout_controller": "haproxy", "rollout_haproxy_socket": "/run/h.sock"}
        ).rollout_controller
        == "haproxy"
    )
    # argo finds its cluster without settings (in-cluster account, $KUBECONFIG, ~/.kube/config)
    assert load(env={"EBPFTOP_ROLLOUT_CONTROLLER": "argo"}).rollout_controller == "argo"


def test_a_bad_address_is_reported_once_not_also_as_missing(files, tmp_path):
    _, _, load = files
    f = write(tmp_path / "c.toml", '[rollout]\ncontroller = "webhook"\nwebhook_url = "http://[x]"\n')
    with pytest.raises(ConfigError) as exc:
        load(config_path=str(f))
    (p,) = exc.value.problems
    assert (p.key, p.line) == ("rollout.webhook_url", 3)
