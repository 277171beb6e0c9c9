"""Settings from TOML files, EBPFTOP_* environment and flags (flags win).

PLACEHOLDER: the full loader (files, environment, errors naming file/key/reason) is
being written; until then only flags apply.
"""

from __future__ import annotations

from dataclasses import replace

from .settings import Settings


class ConfigError(Exception):
    pass


def load_settings(flags: dict[str, object], config_path: str | None = None) -> Settings:
    return replace(Settings(), **flags)
