#!/usr/bin/env bash
# One-command, idempotent setup on Debian 12 as root: packages, kernel headers, BPF
# mounts, and a virtualenv that sees Debian's bcc. `make setup` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

say()  { printf '\033[1msetup:\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33msetup: warning:\033[0m %s\n' "$*" >&2; }

# Packages, one list for the dashboard, the lab and the tests. bcc is Debian's: its
# Python module must match the libbcc it drives, which PyPI does not ship.
APT_PACKAGES=(
  bpfcc-tools python3-bpfcc libbpfcc bpftool iproute2 linux-headers-amd64
  python3-venv python3-dev gcc make git
  tmux haproxy prometheus iperf3 iputils-ping netcat-openbsd procps curl
  golang-go  # the lab's service (lab/goservice, built at `lab up`) and the pprof test fixture
  iptables  # the lab's node knobs: retransmits= drops a share of a node's packets (lab/nodefaults.py)
  iftop nethogs  # bench: the tools the dashboard is measured beside (bench/dashboard_bench.py)
  chromium  # tests/test_serve_browser.py and scripts/browser_screenshot.py: `ebpftop serve` in a real browser
)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    warn "not root: skipping packages, headers and mounts (run 'sudo make setup' for BPF)"
    return 1
  fi
}

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { say "apt packages present"; return; }
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these on install; the lab and tests run their own instances.
  for svc in haproxy prometheus prometheus-node-exporter; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
}

kernel_headers() {
  local rel mod
  rel=$(uname -r)
  mod=/lib/modules/$rel
  if [ -e "$mod/build/include/linux/kconfig.h" ] || [ -e "$mod/build/include/generated/autoconf.h" ]; then
    say "kernel headers present for $rel"
    return
  fi
  if apt-get install -y -qq --no-install-recommends "linux-headers-$rel" >/dev/null 2>&1; then
    say "installed linux-headers-$rel"
    return
  fi
  # The running kernel is newer than anything Debian packages: use the distribution's
  # default headers. bcc only needs them for uapi types and tracepoint/packet code,
  # which is all ebpftop's BPF reads.
  local hdr
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$hdr" ]; then
    warn "no kernel headers found for $rel and none from Debian: BPF panes will say so"
    return
  fi
  mkdir -p "$mod"
  ln -sfn "$hdr" "$mod/build"
  # Debian splits headers: build/ is the -amd64 tree, source/ the -common one that
  # holds include/linux/kconfig.h (bcc fails to compile without it).
  local common="${hdr%-amd64}-common"
  [ -d "$common" ] || common="$hdr"
  ln -sfn "$common" "$mod/source"
  warn "no Debian headers for kernel $rel; linked $hdr into $mod/{build,source}"
  warn "ebpftop's BPF reads only tracepoint arguments and packet data, so this works; other bcc tools may not"
}

mount_fs() {  # TYPE DIR
  if mountpoint -q "$2" 2>/dev/null; then
    say "$1 present at $2"
  elif mount -t "$1" "$1" "$2" 2>/dev/null; then
    say "$1 mounted at $2"
  else
    warn "could not mount $1 at $2: the sources that need it will say so"
  fi
}

mounts() {
  mount_fs tracefs /sys/kernel/tracing
  mount_fs debugfs /sys/kernel/debug
  mount_fs bpf /sys/fs/bpf
}

venv() {
  # Debian's python3 with system site-packages: that is where python3-bpfcc lives.
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  if ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
    warn "bcc does not import in .venv (python3-bpfcc missing?): BPF panes will say so"
  fi
  local stamp=.venv/.installed
  if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing ebpftop into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2> >(grep -v 'is ignored: it is neither' >&2)
    touch "$stamp"
  else
    say ".venv up to date"
  fi
}

if need_root; then
  install_packages
  kernel_headers
  mounts
fi
venv
say "done: run 'make run' (dashboard) or 'make test'"
