#!/usr/bin/env bash
# Build deploy/Containerfile with podman and smoke-test the image the way deploy/kubernetes/
# daemonset.yaml runs it: `make image-smoke` (`make image` builds only). As root, on Debian.
#
# NOT part of `make test`: the first run downloads a few hundred MB (a Debian base made with
# mmdebstrap from deb.debian.org, Debian's bcc and LLVM, the Python dependencies from PyPI)
# and takes minutes; later runs reuse the cached base image and podman's layer cache.
#
# Where no container registry is reachable (this machine: docker.io does not resolve), the base
# is made locally: `mmdebstrap --variant=minbase bookworm` from the host's Debian mirror, then
# `podman import` as $BASE_IMAGE, passed to the build as --build-arg BASE. With BASE_IMAGE set
# to a pullable image (e.g. docker.io/library/debian:bookworm-20240311-slim) that step is
# skipped and podman pulls it.
#
# What it checks, and says as it goes: `ebpftop --version` and `ebpftop doctor` in the image;
# then `ebpftop agent` in a container with the DaemonSet's settings (host PID, every capability
# dropped and the unit's six added back, no new privileges, seccomp unconfined, read-only root,
# bpffs/tracefs/debugfs, /lib/modules and /usr/src read-only, /run/ebpftop and /var/lib/ebpftop
# from the host, here temporary directories): it compiles and attaches its BPF programs
# (bpftool on the host sees them, held by the container's process), serves the unix socket and
# /metrics (`promtool check metrics` passes on a live scrape that counts the test's traffic),
# and after `podman stop` exits 0 with every program gone, nothing left on the interfaces it
# watched and the socket removed.
#
# One difference from the DaemonSet, on purpose: the container gets a network namespace of the
# script's own (a veth pair to a second one for traffic) instead of the host's, so the smoke
# test attaches nothing to this machine's interfaces and sends no traffic beyond those two
# namespaces. SMOKE_NET=host runs it on the host network as the DaemonSet does, with
# `--iface lo` (loopback only). /proc/timer_list stays masked, as a DaemonSet's pod has it.
#
# Idempotent: it removes its own leftovers (container ebpftop-smoke, namespaces
# ebpftop-smoke{,-peer}) first and on exit; the base and the built image stay cached
# (`podman rmi $IMAGE $BASE_IMAGE` drops them; the rootfs tarball is in $WORK).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm-local}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
IMAGE=${IMAGE:-localhost/ebpftop-agent:$VERSION} # the name the DaemonSet's image: has
WORK=${WORK:-/var/tmp/ebpftop-image}
SMOKE_NET=${SMOKE_NET:-own}
ONLY_BUILD=0
[ "${1:-}" = "--build-only" ] && ONLY_BUILD=1
NAME=ebpftop-smoke
NS=ebpftop-smoke
PEER=ebpftop-smoke-peer
MIRROR=${MIRROR:-http://deb.debian.org}

say() { printf '\033[1mimage-smoke:\033[0m %s\n' "$*"; }
ok() { printf '\033[1;32mimage-smoke: ok:\033[0m %s\n' "$*"; }
die() {
  printf '\033[1;31mimage-smoke: FAILED:\033[0m %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (podman, BPF and network namespaces)"
for tool in podman bpftool curl ip tc; do
  command -v "$tool" >/dev/null || die "$tool is not installed (make setup installs bpftool, iproute2, curl; apt-get install podman)"
done

# --- the runtime ------------------------------------------------------------------------------
# podman's default rlimits for root (nofile 1048576, nproc 4194304) are above this machine's
# hard limits, which a runtime without CAP_SYS_RESOURCE cannot raise ("setrlimit RLIMIT_NOFILE:
# Operation not permitted"); nproc above kernel.pid_max was refused here as well.
NPROC=$(ulimit -Hu)
PID_MAX=$(cat /proc/sys/kernel/pid_max)
[ "$NPROC" = unlimited ] || [ "$NPROC" -gt "$PID_MAX" ] && NPROC=$PID_MAX
ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$NPROC:$NPROC")
# crun (podman's default on Debian 12) refuses hybrid cgroups with a controller left on the v2
# hierarchy ("cgroups in hybrid mode not supported"), as on this machine; runc runs there.
PODMAN=(podman)
probe_runtime() {
  local image=$1
  if ! podman run --rm --network=none "${ULIMITS[@]}" "$image" true 2>"$WORK/probe.err"; then
    if grep -q "hybrid mode" "$WORK/probe.err"; then
      command -v runc >/dev/null || die "crun refuses this machine's hybrid cgroups; apt-get install runc"
      PODMAN=(podman --runtime runc)
      "${PODMAN[@]}" run --rm --network=none "${ULIMITS[@]}" "$image" true ||
        die "neither crun nor runc starts a container here"
      say "runtime: runc (crun: $(tr -d '\n' <"$WORK/probe.err"))"
    else
      die "podman cannot start a container: $(cat "$WORK/probe.err")"
    fi
  else
    say "runtime: podman's default"
  fi
}

# --- leftovers of an earlier run, and this run's on exit --------------------------------------
TMP=""
WWW=""
cleanup() {
  [ -n "$WWW" ] && kill "$WWW" 2>/dev/null
  podman rm -f -t 30 "$NAME" >/dev/null 2>&1 || true
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  [ -n "$TMP" ] && rm -rf "$TMP"
  return 0
}
cleanup
trap cleanup EXIT
mkdir -p "$WORK"

# --- the base image ---------------------------------------------------------------------------
if podman image exists "$BASE_IMAGE"; then
  say "base: $BASE_IMAGE (cached)"
elif [[ "$BASE_IMAGE" != localhost/* ]]; then
  say "base: pulling $BASE_IMAGE"
  podman pull "$BASE_IMAGE" || die "cannot pull $BASE_IMAGE (no registry? leave BASE_IMAGE unset to make one with mmdebstrap)"
else
  if ! command -v mmdebstrap >/dev/null; then
    say "installing mmdebstrap (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >/dev/null
  fi
  say "base: mmdebstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
  # dpkg's path excludes are those of Debian's -slim images; they stay in the image
  # (/etc/dpkg/dpkg.cfg.d), so the Containerfile's apt-get install keeps them too.
  start=$(date +%s)
  # ca-certificates in the base: see BUILD_CA below.
  nice -n 10 mmdebstrap --variant=minbase --include=ca-certificates --format=tar --quiet \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    bookworm "$WORK/bookworm-minbase.tar" \
    "deb $MIRROR/debian bookworm main" \
    "deb $MIRROR/debian bookworm-updates main" \
    "deb $MIRROR/debian-security bookworm-security main" ||
    die "mmdebstrap failed (is $MIRROR reachable?)"
  podman import --quiet --change 'CMD ["bash"]' \
    --message "mmdebstrap --variant=minbase bookworm (scripts/image_smoke.sh)" \
    "$WORK/bookworm-minbase.tar" "$BASE_IMAGE" >/dev/null
  say "base: $BASE_IMAGE made in $(($(date +%s) - start)) s"
fi
probe_runtime "$BASE_IMAGE"

# --- the build --------------------------------------------------------------------------------
# Where HTTPS leaves through a proxy that re-signs it (this machine: PyPI's certificate comes
# from a local CA in /usr/local/share/ca-certificates), pip in the build trusts only what the
# image does. The host's bundle is bind-mounted read-only over the image's for the build
# (BUILD_CA=/path/bundle.crt to choose one, BUILD_CA= for none): a mount, so none of it is in a
# layer; over a file the base already has (mmdebstrap --include=ca-certificates above), since a
# new mount point would be left in the image as an empty file.
BUILD=()
if [ -z "${BUILD_CA+set}" ] && compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  BUILD_CA=/etc/ssl/certs/ca-certificates.crt
fi
if [ -n "${BUILD_CA:-}" ]; then
  "${PODMAN[@]}" run --rm --network=none "${ULIMITS[@]}" "$BASE_IMAGE" test -f /etc/ssl/certs/ca-certificates.crt ||
    die "BUILD_CA needs a base with ca-certificates installed ($BASE_IMAGE has none)"
  BUILD+=(-v "$BUILD_CA:/etc/ssl/certs/ca-certificates.crt:ro")
  say "build trusts the CA bundle $BUILD_CA (mounted for the build, not in the image)"
fi
say "building $IMAGE (nice -n 10; the first build downloads bcc, LLVM and the Python dependencies)"
start=$(date +%s)
nice -n 10 "${PODMAN[@]}" build "${ULIMITS[@]}" "${BUILD[@]}" -f deploy/Containerfile \
  --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" . >"$WORK/build.log" 2>&1 ||
  die "podman build failed; the end of $WORK/build.log: $(tail -20 "$WORK/build.log")"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
ok "built $IMAGE in $(($(date +%s) - start)) s, $((size / 1000000)) MB (log: $WORK/build.log)"
[ "$ONLY_BUILD" -eq 1 ] && exit 0

# --- the container's settings: the DaemonSet's --------------------------------------------------
TMP=$(mktemp -d /tmp/ebpftop-smoke.XXXXXX)
mkdir -p "$TMP/run" "$TMP/state"
CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' deploy/ebpftop-agent.service | sed 's/CAP_//g; s/ /,/g')
RUN=(
  "${PODMAN[@]}" run "${ULIMITS[@]}" --pid=host --cap-drop=all "--cap-add=$CAPS"
  --security-opt seccomp=unconfined --security-opt no-new-privileges --read-only
  -v /sys/fs/bpf:/sys/fs/bpf -v /sys/kernel/tracing:/sys/kernel/tracing
  -v /sys/kernel/debug:/sys/kernel/debug -v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro
  -v "$TMP/run:/run/ebpftop" -v "$TMP/state:/var/lib/ebpftop"
)
if [ "$SMOKE_NET" = host ]; then
  RUN+=(--net=host)
  IN_NS=()
  AGENT_OPTS=(--iface lo)
  WATCHED=(lo)
else
  # Two namespaces of the script's own: the agent's (lo and veth0) and a peer to talk to it.
  ip netns add "$NS"
  ip netns add "$PEER"
  ip link add veth0 netns "$NS" type veth peer name veth1 netns "$PEER"
  ip -n "$NS" addr add 198.18.252.1/30 dev veth0
  ip -n "$PEER" addr add 198.18.252.2/30 dev veth1
  for n in "$NS" "$PEER"; do ip -n "$n" link set lo up; done
  ip -n "$NS" link set veth0 up
  ip -n "$PEER" link set veth1 up
  RUN+=("--net=ns:/run/netns/$NS")
  IN_NS=(ip netns exec "$NS")
  AGENT_OPTS=()
  WATCHED=(lo veth0)
fi
PORT=$("${IN_NS[@]}" python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# --- in the image: --version, doctor ----------------------------------------------------------
version=$("${RUN[@]}" --rm --entrypoint /opt/ebpftop/venv/bin/ebpftop "$IMAGE" --version) ||
  die "ebpftop --version failed in the image"
ok "ebpftop --version in the image: $version"
doctor_rc=0
"${RUN[@]}" --rm --entrypoint /opt/ebpftop/venv/bin/ebpftop "$IMAGE" doctor >"$TMP/doctor.txt" 2>&1 || doctor_rc=$?
sed 's/^/    /' "$TMP/doctor.txt"
[ "$doctor_rc" -eq 0 ] || die "ebpftop doctor in the image: exit $doctor_rc"
ok "ebpftop doctor in the image: exit 0 ($(tail -1 "$TMP/doctor.txt"))"

# --- /proc/timer_list ---------------------------------------------------------------------------
# Container engines mask /proc/timer_list (podman, seen here; Docker, containerd and CRI-O
# have it in their default masked paths). The flows collector relates the kernel's jiffies to
# the monotonic clock through it, and where it is masked, through a BPF test run that reads
# both clocks in the kernel (collectors/kclock_probe.py). Checked masked, as the DaemonSet runs;
# the agent below runs masked too.
"${RUN[@]}" --rm --entrypoint /opt/ebpftop/venv/bin/ebpftop "$IMAGE" snapshot --source flows \
  --duration 3 >"$TMP/masked.txt" 2>&1 || true
if grep -q "cannot relate the kernel's jiffies" "$TMP/masked.txt"; then
  die "flows is down with /proc/timer_list masked: $(grep -m1 "cannot relate" "$TMP/masked.txt" | cut -c1-200)"
fi
ok "flows starts with /proc/timer_list masked (the runtime's default, as in the DaemonSet)"

# --- the agent --------------------------------------------------------------------------------
say "starting the agent: podman run -d --name $NAME ... $IMAGE ${AGENT_OPTS[*]} --socket /run/ebpftop/agent.sock --metrics 127.0.0.1:$PORT"
# Global options (--iface) go before the subcommand, which the image's ENTRYPOINT names: the
# entrypoint is given in full here when there are any.
if [ "${#AGENT_OPTS[@]}" -gt 0 ]; then
  "${RUN[@]}" -d --name "$NAME" --entrypoint /opt/ebpftop/venv/bin/ebpftop "$IMAGE" \
    "${AGENT_OPTS[@]}" agent --socket /run/ebpftop/agent.sock --metrics "127.0.0.1:$PORT" >/dev/null
else
  "${RUN[@]}" -d --name "$NAME" "$IMAGE" --socket /run/ebpftop/agent.sock --metrics "127.0.0.1:$PORT" >/dev/null
fi
PID=$(podman inspect --format '{{.State.Pid}}' "$NAME")
start=$(date +%s)
url=""
for _ in $(seq 1 300); do
  url=$(podman logs "$NAME" 2>&1 | sed -n 's|.*metrics on \(http://[^ ]*\)/metrics.*|\1/metrics|p' | head -1)
  [ -n "$url" ] && break
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] ||
    die "the agent exited: $(podman logs "$NAME" 2>&1 | tail -20)"
  sleep 1
done
[ -n "$url" ] || die "no 'metrics on' line in 300 s: $(podman logs "$NAME" 2>&1 | tail -20)"
ok "agent (host pid $PID) serves $url after $(($(date +%s) - start)) s"

# What the agent's process holds, from its fdinfo: BPF programs (prog_id) and links
# (link_type, link_id, ifindex for tcx). bpftool 7.1 (Debian 12) lists tcx links only as
# "type 11" without their interface and `bpftool net show` not at all, hence fdinfo.
held() {
  python3 - "$PID" "$1" <<'EOF'
import pathlib, sys
pid, what = sys.argv[1], sys.argv[2]
for f in pathlib.Path(f"/proc/{pid}/fdinfo").iterdir():
    try:
        pairs = [line.split(":", 1) for line in f.read_text().splitlines() if ":" in line]
    except OSError:
        continue
    info = {k.strip(): v.strip() for k, v in pairs}
    if what == "progs" and "prog_id" in info and "link_id" not in info:
        print(info["prog_id"])
    elif what == "links" and "link_id" in info:
        print(info["link_id"], info.get("link_type", "?"), info.get("prog_id", "?"), info.get("ifindex", "-"))
EOF
}
ifname() { "${IN_NS[@]}" ip -o link show | awk -F': ' -v i="$1" '$1 == i {sub(/@.*/, "", $2); print $2}'; }
still_listed() { # FILE ID...: the IDs that bpftool's JSON in FILE still lists
  python3 -c 'import json, sys; ids = {x["id"] for x in json.load(open(sys.argv[1]))}
print(" ".join(a for a in sys.argv[2:] if int(a) in ids))' "$@"
}
scrape() { "${IN_NS[@]}" curl -sf --noproxy '*' --max-time 10 "$url"; }
flows_up() { scrape | grep -qE '^ebpftop_source_up\{source="flows"\} 1(\.0)?$'; }
for _ in $(seq 1 180); do
  flows_up && break
  sleep 1
done
flows_up || die "flows not up in 180 s (the reason: ebpftop snapshot --source flows in the image)"
ok "flows is up (ebpftop_source_up{source=\"flows\"} 1)"
mapfile -t PROGS < <(held progs | sort -un)
mapfile -t LINKS < <(held links | sort -n)
[ "${#PROGS[@]}" -gt 0 ] || die "the agent holds no BPF program"
bpftool prog show --json >"$TMP/progs.json"
names=$(python3 - "$TMP/progs.json" "${PROGS[@]}" <<'EOF'
import json, sys
progs = {p["id"]: p for p in json.load(open(sys.argv[1]))}
ids = [int(i) for i in sys.argv[2:]]
missing = [i for i in ids if i not in progs]
if missing:
    sys.exit(f"held but not listed by bpftool: {missing}")
print(", ".join(f"{progs[i].get('name', '?')} ({progs[i]['type']})" for i in ids))
EOF
) || die "$names"
ok "bpftool prog show lists the ${#PROGS[@]} programs the agent holds: $names"
for dev in "${WATCHED[@]}"; do
  on=()
  for l in "${LINKS[@]}"; do
    read -r id type prog ifindex <<<"$l"
    [ "$ifindex" != - ] && [ "$(ifname "$ifindex")" = "$dev" ] && on+=("$type link $id (prog $prog)")
  done
  # kernels without tcx: clsact filters, which tc lists with their program ids
  for id in "${PROGS[@]}"; do
    "${IN_NS[@]}" tc filter show dev "$dev" ingress 2>/dev/null | grep -qE "id $id( |$)" && on+=("clsact ingress (prog $id)")
    "${IN_NS[@]}" tc filter show dev "$dev" egress 2>/dev/null | grep -qE "id $id( |$)" && on+=("clsact egress (prog $id)")
  done
  [ "${#on[@]}" -ge 1 ] || die "nothing of the agent attached to $dev"
  ok "$dev: ${on[*]}"
done
[ -S "$TMP/run/agent.sock" ] || die "no socket at /run/ebpftop/agent.sock"
ok "unix socket /run/ebpftop/agent.sock exists"

# Traffic the flows collector must count: the scrapes on loopback and, in the script's own
# namespaces, HTTP over the veth pair from the peer to a server beside the agent.
counted() { scrape | awk '/^ebpftop_flow_bytes_total\{/ {s += $NF} END {exit !(s > 0)}'; }
if [ "$SMOKE_NET" != host ]; then
  mkdir -p "$TMP/www"
  echo smoke >"$TMP/www/index.html"
  ip netns exec "$NS" python3 -m http.server --bind 198.18.252.1 --directory "$TMP/www" 8080 \
    >/dev/null 2>&1 &
  WWW=$!
  from_peer() { ip netns exec "$PEER" curl -sf --noproxy '*' --max-time 5 http://198.18.252.1:8080/ >/dev/null; }
  for _ in $(seq 1 50); do from_peer && break; sleep 0.1; done
  from_peer || die "no HTTP over the veth pair"
  peer_seen() {
    from_peer
    scrape | grep -qE '^ebpftop_peer_connections\{peer="198\.18\.252\.2"\} [1-9]'
  }
  # a gauge of the current top connections: seen once is enough
  seen=0
  for _ in $(seq 1 60); do
    peer_seen && seen=1 && break
    sleep 1
  done
  [ "$seen" -eq 1 ] || die "the veth peer 198.18.252.2 never showed in ebpftop_peer_connections"
  ok "the HTTP connections from the peer namespace over veth0 show: ebpftop_peer_connections{peer=\"198.18.252.2\"}"
fi
for _ in $(seq 1 60); do
  counted && break
  sleep 1
done
counted || die "no flow bytes in /metrics after the traffic"
scrape >"$TMP/metrics.txt"
samples=$(grep -c '^ebpftop_' "$TMP/metrics.txt")
flow_bytes=$(awk '/^ebpftop_flow_bytes_total\{/ {s += $NF} END {print s}' "$TMP/metrics.txt")
ok "/metrics: $samples ebpftop samples, $flow_bytes flow bytes counted (kept in $WORK/metrics.txt)"
cp "$TMP/metrics.txt" "$WORK/metrics.txt"
grep -E '^ebpftop_(source_up|agent_resident_memory_bytes|agent_cpu_usage_ratio)' "$TMP/metrics.txt" | sed 's/^/    /'
if command -v promtool >/dev/null; then
  promtool check metrics <"$TMP/metrics.txt" || die "promtool check metrics failed"
  ok "promtool check metrics passes on the live scrape"
else
  say "promtool not installed: check metrics skipped"
fi

# --- stop: everything detached ----------------------------------------------------------------
start=$(date +%s)
podman stop -t 30 "$NAME" >/dev/null
rc=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
[ "$rc" -eq 0 ] || die "the agent exited $rc on podman stop: $(podman logs "$NAME" 2>&1 | tail -20)"
ok "podman stop: the agent exited 0 after $(($(date +%s) - start)) s"
bpftool prog show --json >"$TMP/progs.after.json"
left=$(still_listed "$TMP/progs.after.json" "${PROGS[@]}")
[ -z "$left" ] || die "programs left after stop: $left"
ok "none of the ${#PROGS[@]} programs is left in bpftool prog show"
bpftool link show --json >"$TMP/links.after.json"
mapfile -t LINK_IDS < <(printf '%s\n' "${LINKS[@]}" | awk '{print $1}')
left=$(still_listed "$TMP/links.after.json" "${LINK_IDS[@]}")
[ -z "$left" ] || die "links left after stop: $left"
ok "none of its ${#LINKS[@]} links is left in bpftool link show"
for dev in "${WATCHED[@]}"; do
  filters=$("${IN_NS[@]}" tc filter show dev "$dev" ingress 2>/dev/null; "${IN_NS[@]}" tc filter show dev "$dev" egress 2>/dev/null)
  for id in "${PROGS[@]}"; do
    grep -qE "id $id( |$)" <<<"$filters" && die "$dev still has program $id: $filters"
  done
  if [ "$SMOKE_NET" != host ]; then
    # The script's own namespace: any filter left on its interfaces is the agent's.
    [ -z "$filters" ] || die "$dev: tc filters left: $filters"
    ok "$dev: tc filter show (ingress, egress) is empty"
  else
    ok "$dev: none of the agent's programs in tc filter show (ingress, egress)"
  fi
done
[ ! -e "$TMP/run/agent.sock" ] || die "the socket is left after stop"
ok "the socket is removed"
say "all checks passed ($IMAGE, $((size / 1000000)) MB)"
