"""Settings from TOML files, EBPFTOP_* environment and flags (flags win).

Reads the table `settings.py` declares and knows no setting by name. Precedence, the
sudo rules and why unknown variables are errors: docs/ARCHITECTURE.md ("Settings").
Every problem is reported together, naming where, the key and the reason.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import itertools
import math
import os
import pwd
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any

from . import settings as settings_module
from .settings import Settings

SYSTEM_FILE = Path("/etc/ebpftop/config.toml")
ENV_PREFIX = "EBPFTOP_"
CONFIG_ENV = "EBPFTOP_CONFIG"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Problem:
    where: str  # a path, "environment EBPFTOP_X" or "flag --x"
    key: str | None  # "section.key" when one is concerned
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        loc = f"{self.where}:{self.line}" if self.line else self.where
        return ": ".join(part for part in (loc, self.key, self.reason) if part)


class ConfigError(Exception):
    """Bad configuration: every problem found, in `problems`.

    str() is one line (problems joined by "; ") so callers that print it through
    text.clean() stay readable; `options.load_or_exit` prints one problem per line.
    """

    def __init__(self, problems: list[Problem] | str) -> None:
        self.problems = (
            [Problem("configuration", None, problems)] if isinstance(problems, str) else list(problems)
        )
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Option:
    """One Settings field as the configuration sees it."""

    name: str
    section: str
    key: str
    kind: str  # bool, int, float, str, strs
    optional: bool  # None allowed (unset)
    default: Any
    check: Any
    flag: str
    doc: str
    requires: Mapping[str, tuple[str, ...]]  # value of this setting -> fields it then needs

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _kind(tp: Any) -> tuple[str, bool]:
    args = typing.get_args(tp)
    optional = isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported setting type {tp!r}")
        tp = rest[0]
    if tp in (bool, int, float, str):
        return tp.__name__, optional
    if typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, ...):
        return "strs", optional
    raise TypeError(f"unsupported setting type {tp!r}")


def _docs() -> dict[str, str]:
    """Field name -> the string literal written under it in settings.py."""
    try:
        tree = ast.parse(inspect.getsource(settings_module))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            body = node.body
            for stmt, nxt in itertools.pairwise(body):
                if (
                    isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    out[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return out


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"setting {f.name} has no default")


@functools.cache
def options() -> tuple[Option, ...]:
    """Every setting, in declaration order."""
    hints = typing.get_type_hints(Settings)
    docs = _docs()
    out = []
    for f in fields(Settings):
        meta = f.metadata
        kind, optional = _kind(hints[f.name])
        out.append(
            Option(
                name=f.name,
                # A field declared without setting(...) still loads, from [general].
                section=meta.get("section") or "general",
                key=meta.get("key") or f.name,
                kind=kind,
                optional=optional,
                default=_default(f),
                check=meta.get("check"),
                flag=meta.get("flag") or "--" + f.name.replace("_", "-"),
                doc=docs.get(f.name, ""),
                requires=types.MappingProxyType(dict(meta.get("requires") or {})),
            )
        )
    return tuple(out)


def _by_path() -> dict[str, Option]:
    return {o.path: o for o in options()}


def _sections() -> dict[str, dict[str, Option]]:
    out: dict[str, dict[str, Option]] = {}
    for o in options():
        out.setdefault(o.section, {})[o.key] = o
    return out


def _show(value: Any) -> str:
    """An untrusted value in a message: quoted, control characters escaped."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _name(key: str) -> str:
    return key if key.isprintable() and key.isascii() and key.strip() == key and key else _show(key)


def _suggest(word: str, candidates: list[str], fmt: str = "{}") -> str:
    # 0.5 so that a swapped pair in a short name ("iu" for "ui") still finds it.
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f" (did you mean {fmt.format(match[0])}?)" if match else ""


# ---------------------------------------------------------------- coercion


def _finite(x: float) -> str | None:
    return None if math.isfinite(x) else "must be a finite number"


def _from_toml(opt: Option, value: Any) -> tuple[Any, str | None]:
    """A value typed by TOML (or argparse) -> (value, reason it is wrong or None)."""
    if opt.optional and (value is None or value == ""):
        return None, None
    if opt.kind == "bool":
        return (
            (value, None) if isinstance(value, bool) else (None, f"must be true or false, got {_show(value)}")
        )
    if opt.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        return None, f"must be a whole number, got {_show(value)}"
    if opt.kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), _finite(float(value))
        return None, f"must be a number, got {_show(value)}"
    if opt.kind == "str":
        return (value, None) if isinstance(value, str) else (None, f"must be a string, got {_show(value)}")
    # strs
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value), None
    return None, f'must be a list of strings, e.g. ["eth0", "eth1"], got {_show(value)}'


def _from_env(opt: Option, text: str) -> tuple[Any, str | None]:
    """An environment string -> (value, reason it is wrong or None)."""
    if opt.optional and text == "":
        return None, None
    s = text.strip()
    if opt.kind == "bool":
        if s.lower() in _TRUE:
            return True, None
        if s.lower() in _FALSE:
            return False, None
        return None, f"must be 1/0, true/false, yes/no or on/off, got {_show(text)}"
    if opt.kind == "int":
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s), None
        return None, f"must be a whole number, got {_show(text)}"
    if opt.kind == "float":
        try:
            x = float(s)
        except ValueError:
            return None, f"must be a number, got {_show(text)}"
        return x, _finite(x)
    if opt.kind == "str":
        return text, None
    # strs: comma-separated; empty items (a trailing comma) are dropped
    return tuple(p.strip() for p in text.split(",") if p.strip()), None


def _validate(opt: Option, value: Any) -> str | None:
    if value is None or opt.check is None:
        return None
    reason = opt.check(value)
    return f"{reason}, got {_show(value)}" if reason else None


# ---------------------------------------------------------------- files


def user_config_file(env: Mapping[str, str]) -> Path | None:
    """The user file for this process (see the module docstring for sudo)."""
    sudo_user, sudo_uid = env.get("SUDO_USER"), env.get("SUDO_UID")
    if os.geteuid() == 0 and sudo_user and sudo_uid and sudo_user != "root":
        try:
            pw = pwd.getpwnam(sudo_user)
        except KeyError:
            return None
        if str(pw.pw_uid) != sudo_uid:
            return None
        return Path(pw.pw_dir) / ".config" / "ebpftop" / "config.toml"
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec says relative values are ignored
        return Path(xdg) / "ebpftop" / "config.toml"
    home = env.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            return None
    return Path(home) / ".config" / "ebpftop" / "config.toml"


def _unsafe_for_root(st: os.stat_result, env: Mapping[str, str]) -> str | None:
    if os.geteuid() != 0:
        return None
    owners = {0}
    if env.get("SUDO_UID", "").isdigit():
        owners.add(int(env["SUDO_UID"]))
    if st.st_uid not in owners:
        return (
            f"refusing to read as root: owned by uid {st.st_uid}, "
            "not root or the sudo user (chown it to root)"
        )
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0):
        return "refusing to read as root: writable by other users (chmod go-w it)"
    return None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_-]+)\s*\]")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _lines_of(text: str) -> dict[str, int]:
    """Best-effort 'section.key' (and 'section') -> line number, for messages."""
    out: dict[str, int] = {}
    section = ""
    for n, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            section = m.group(1)
            out.setdefault(section, n)
        elif m := _ASSIGN.match(line):
            out.setdefault(f"{section}.{m.group(1)}" if section else m.group(1), n)
    return out


# Where a value was read: (where, line), as a Problem names it.
Origins = dict[str, tuple[str, int | None]]


def read_file(
    path: Path, env: Mapping[str, str], *, required: bool
) -> tuple[dict[str, Any], list[Problem], Origins]:
    """One TOML file -> ({field name: value}, problems, origins). A missing optional file is empty."""
    where = str(path)
    try:
        with open(path, "rb") as fh:
            reason = _unsafe_for_root(os.fstat(fh.fileno()), env)
            if reason:
                return {}, [Problem(where, None, reason)], {}
            raw = fh.read()
    except FileNotFoundError:
        return {}, ([Problem(where, None, "no such file")] if required else []), {}
    except OSError as exc:
        return {}, [Problem(where, None, f"cannot read: {exc.strerror or exc}")], {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return {}, [Problem(where, None, "not UTF-8 text", line)], {}
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_AT.search(msg)
        at = int(m.group(1)) if m else None
        return {}, [Problem(where, None, f"invalid TOML: {_TOML_AT.sub('', msg)}", at)], {}
    return _read_doc(doc, where, _lines_of(text))


def _read_doc(
    doc: dict[str, Any], where: str, lines: dict[str, int]
) -> tuple[dict[str, Any], list[Problem], Origins]:
    sections = _sections()
    paths = list(_by_path())
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    origins: Origins = {}
    for name, body in doc.items():
        if name not in sections:
            owner = [p for p in paths if p.split(".", 1)[1] == name]
            if owner and not isinstance(body, dict):
                problems.append(
                    Problem(
                        where,
                        _name(name),
                        f"settings belong in a section (did you mean {owner[0]}?)",
                        lines.get(name),
                    )
                )
            else:
                hint = _suggest(name, list(sections), "[{}]")
                problems.append(Problem(where, f"[{_name(name)}]", f"unknown section{hint}", lines.get(name)))
            continue
        if not isinstance(body, dict):
            problems.append(Problem(where, name, f"must be a section [{name}], not a value", lines.get(name)))
            continue
        for key, value in body.items():
            path = f"{name}.{key}"
            opt = sections[name].get(key)
            if opt is None:
                elsewhere = [p for p in paths if p.split(".", 1)[1] == key]
                if elsewhere:
                    hint = f" (it belongs in [{elsewhere[0].split('.')[0]}]: {elsewhere[0]})"
                else:
                    hint = _suggest(path, [f"{name}.{k}" for k in sections[name]]) or _suggest(path, paths)
                problems.append(Problem(where, f"{name}.{_name(key)}", f"unknown key{hint}", lines.get(path)))
                continue
            coerced, reason = _from_toml(opt, value)
            reason = reason or _validate(opt, coerced)
            if reason:
                problems.append(Problem(where, path, reason, lines.get(path)))
            else:
                values[opt.name] = coerced
            origins[opt.name] = (where, lines.get(path))
    return values, problems, origins


# ---------------------------------------------------------------- environment and flags


def read_env(env: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem], Origins]:
    by_env = {o.env: o for o in options()}
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    origins: Origins = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        where = f"environment {_name(var)}"
        opt = by_env.get(var)
        if opt is None:
            hint = _suggest(var, [*by_env, CONFIG_ENV])
            problems.append(Problem(where, None, f"unknown setting{hint}"))
            continue
        value, reason = _from_env(opt, env[var])
        reason = reason or _validate(opt, value)
        if reason:
            problems.append(Problem(where, opt.path, reason))
        else:
            values[opt.name] = value
        origins[opt.name] = (where, None)
    return values, problems, origins


def read_flags(flags: Mapping[str, object]) -> tuple[dict[str, Any], list[Problem], Origins]:
    by_name = {o.name: o for o in options()}
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    origins: Origins = {}
    for name, raw in flags.items():
        opt = by_name.get(name)
        if opt is None:
            problems.append(Problem(f"flag --{name.replace('_', '-')}", None, "not a setting"))
            continue
        value, reason = _from_toml(opt, raw)
        reason = reason or _validate(opt, value)
        if reason:
            problems.append(Problem(f"flag {opt.flag}", opt.path, reason))
        else:
            values[opt.name] = value
        origins[opt.name] = (f"flag {opt.flag}", None)
    return values, problems, origins


def _missing_requirements(
    values: Mapping[str, Any], origins: Origins, reported: set[str | None]
) -> list[Problem]:
    """A setting whose value needs others (a controller its address) when they are unset.

    Named where the needing value was set: that is the line to change or complete.
    A needed setting that already has a problem of its own (in `reported`) is not repeated.
    """
    by_name = {o.name: o for o in options()}
    problems = []
    for opt in options():
        value = values.get(opt.name, opt.default)
        needed = [by_name[n] for n in (opt.requires.get(value, ()) if isinstance(value, str) else ())]
        unset = [
            o for o in needed if o.path not in reported and values.get(o.name, o.default) in (None, "", ())
        ]
        if unset:
            where, line = origins.get(opt.name, ("configuration", None))
            names = " and ".join(o.path for o in unset)
            problems.append(Problem(where, opt.path, f"{value!r} needs {names}, not set", line))
    return problems


# ---------------------------------------------------------------- the loader

_DEFAULT: Any = object()


def config_files(
    config_path: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    *,
    system_file: Path | None = SYSTEM_FILE,
    user_file: Path | None = _DEFAULT,
) -> list[tuple[Path, bool]]:
    """The files to read, lowest precedence first, each with whether it must exist."""
    chosen = config_path if config_path is not None else (env.get(CONFIG_ENV) or None)
    if chosen is not None:
        return [(Path(chosen), True)]
    if user_file is _DEFAULT:
        user_file = user_config_file(env)
    return [(p, False) for p in (system_file, user_file) if p is not None]


def load_settings(
    flags: Mapping[str, object],
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    system_file: Path | None = SYSTEM_FILE,
    user_file: Path | None = _DEFAULT,
) -> Settings:
    """Files < environment < flags. Raises ConfigError naming every problem found."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    origins: Origins = {}
    layers = [
        read_file(path, env, required=required)
        for path, required in config_files(config_path, env, system_file=system_file, user_file=user_file)
    ]
    for got, bad, where in (*layers, read_env(env), read_flags(flags)):
        values.update(got)
        problems += bad
        origins.update(where)
    problems += _missing_requirements(values, origins, {p.key for p in problems})
    if problems:
        raise ConfigError(problems)
    return Settings(**values)


# ---------------------------------------------------------------- --help-config


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def describe(flags: set[str] | None = None) -> str:
    """Every setting as a commented TOML file: valid to copy into config.toml."""
    out = [
        "# ebpftop configuration: /etc/ebpftop/config.toml, then ~/.config/ebpftop/config.toml",
        "# (or --config FILE); then EBPFTOP_* environment variables; then flags. Flags win.",
    ]
    by_section: dict[str, list[Option]] = {}
    for o in options():  # grouped: TOML allows each [section] once
        by_section.setdefault(o.section, []).append(o)
    for section, opts in by_section.items():
        out += ["", f"[{section}]"]
        for o in opts:
            out += _describe_one(o, flags)
    return "\n".join(out) + "\n"


def _describe_one(o: Option, flags: set[str] | None) -> list[str]:
    out = [f"# {line}".rstrip() for line in o.doc.splitlines() or [""]]
    via = [f"env {o.env}"]
    if flags is None or o.flag in flags:
        via.append(f"flag {o.flag}")
    out.append("# " + ", ".join(via))
    out.append(f"# {o.key} = (unset)" if o.default is None else f"{o.key} = {_toml_literal(o.default)}")
    return out
