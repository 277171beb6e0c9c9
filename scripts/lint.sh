#!/usr/bin/env bash
# `make lint`: the layer contracts, ruff (lint and format) and mypy. Every step runs and
# the exit status says whether any failed, so one run shows all findings.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
fail=0
step() { printf '\033[1mlint:\033[0m %s\n' "$*"; "$@" || fail=1; }

step "$bin/lint-imports"
step "$bin/ruff" check .
step "$bin/ruff" format --check .

# The repository keeps the design card's top level (core/, tui/, ...) while the package is
# `ebpftop.*`; mypy resolves modules from folders, so it reads them through a tree of links
# named the way they are installed.
root=.venv/lint-root
rm -rf "$root" && mkdir -p "$root/ebpftop" && : > "$root/ebpftop/__init__.py"
for d in core collectors actions tui cli lab themes; do ln -s "$PWD/$d" "$root/ebpftop/$d"; done
step env MYPYPATH="$root" "$bin/mypy" -p ebpftop
exit $fail
