"""Two or more versions of the rules datapath, whole (BPF and user space), on the same
packets (figures to stdout).

bench/rules_variants.py changes rules.bpf.c alone; a new map layout changes user space
too, so the versions here are git checkouts (e.g. `git worktree add /tmp/old <rev>`).
Each runs in an agent of its own that imports ebpftop from its checkout and loads the
rule set as a real RuleBook in namespace A. All versions are attached together in one
tcx chain on A's ingress, an empty program last (the floor), in an order that rotates
every round, while one sender in B sends UDP datagrams to A flat out. Figures, medians
over rounds: ns per packet above the floor when first in the chain, and the difference
from the first version named, paired within each round. Each run loads every version
once (one placement in memory): run it a few times.

Usage: sudo .venv/bin/python bench/rules_ab.py ROUNDS SET LABEL=CHECKOUT [LABEL=CHECKOUT ...]
       SET: one of 1,64,256,2T,256T (T: all tables); CHECKOUT: a directory, or "" for this one
"""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from netns import PYTHON, veth_pair  # noqa: E402
from variants import ChainFigures  # noqa: E402

AGENT = r"""
import os, socket, sys
if sys.argv[5]:
    sys.path.insert(0, sys.argv[5])  # ebpftop from that checkout, not the one installed
from bcc import BPF
from ebpftop.collectors.flows import tcx
from ebpftop.collectors.rules import bpfsys, datapath
from ebpftop.collectors.rules.grammar import parse_text
from ebpftop.collectors.rules.ruleset import RuleBook
iface, floor, rules, tmp = sys.argv[1:5]
ifindex = socket.if_nametoindex(iface)
book = None
if floor:
    empty = BPF(text="int ebpftop_empty(struct __sk_buff *skb) { return -1; }")
    fd = empty.load_func("ebpftop_empty", BPF.SCHED_CLS).fd
else:
    # versions may lay counters out differently
    datapath.Datapath.fold = lambda self, s, reset=frozenset(): None
    pin = f"/sys/fs/bpf/ebpftop-ab-{os.getpid()}"
    book = RuleBook(pin, f"{tmp}/state-{os.getpid()}", (iface,))
    book.replace([x for _, x in parse_text(open(rules).read())[0]], "bench")
    fd = bpfsys.obj_get(pin + "/prog_ebpftop_rl_in")
    for lp in book.dp.links():  # attached below, in each round's order
        tcx.detach(bpfsys.obj_get(lp.path))
        os.unlink(lp.path)
print(tcx.prog_id_of_fd(fd), datapath.__file__, flush=True)
link = None
try:
    for line in sys.stdin:
        if line.startswith("attach"):
            link = tcx.attach(fd, ifindex, True)
        else:
            tcx.detach(link)
        print("ok", flush=True)
finally:
    if book:
        book.dp.remove()
        book.state.remove()
        book.close()
"""


def package_dir(checkout: str, tmp: Path) -> str:
    """A directory whose `ebpftop` package is the checkout's (its top-level folders)."""
    if not checkout:
        return ""
    pkg = tmp / f"pkg{len(list(tmp.glob('pkg*')))}" / "ebpftop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for sub in ("core", "collectors", "actions", "tui", "cli", "lab", "themes"):
        if (Path(checkout).resolve() / sub).is_dir():  # older checkouts have fewer folders
            (pkg / sub).symlink_to(Path(checkout).resolve() / sub)
    return str(pkg.parent)


def main() -> int:
    from flows_bench import FAST_FLOODER, enable_stats, prog_stats, stop
    from rules_bench import rule_file
    from rules_variants import SETS

    if os.geteuid() != 0:
        print("rules_ab: needs root", file=sys.stderr)
        return 2
    if len(sys.argv) < 4 or sys.argv[2] not in SETS or not all("=" in a for a in sys.argv[3:]):
        print(__doc__.split("Usage:")[1], file=sys.stderr)
        return 2
    rounds, case = int(sys.argv[1]), sys.argv[2]
    versions = dict(a.split("=", 1) for a in sys.argv[3:])
    names = list(versions)
    stats_fd = enable_stats()
    tmp = Path(tempfile.mkdtemp(prefix="ebpftop-rules-ab-"))
    figures = ChainFigures(names[0], prog_stats)
    agents: dict[str, subprocess.Popen] = {}
    try:
        with veth_pair("ebab") as net:
            rules = str(rule_file(tmp, case, *SETS[case], net.a_ip4, net.b_ip4, ports="1000-1999"))
            for name, checkout in [*versions.items(), ("floor", "")]:
                agents[name] = net.a.popen(
                    PYTHON,
                    "-c",
                    AGENT,
                    net.a_if,
                    "1" if name == "floor" else "",
                    rules,
                    str(tmp),
                    package_dir(checkout, tmp),
                    bpf=True,
                    stdin=subprocess.PIPE,
                )
            ids = {}
            for name, agent in agents.items():
                line = agent.stdout.readline().split()
                if not line:
                    raise RuntimeError(f"agent {name}: {agent.stderr.read()[-2000:]}")
                ids[name] = int(line[0])
                print(f"{name}: datapath from {line[1]}", file=sys.stderr)

            def tell(name: str, what: str) -> None:
                agents[name].stdin.write(what + "\n")
                agents[name].stdin.flush()
                if agents[name].stdout.readline().strip() != "ok":
                    raise RuntimeError(f"agent {name}: {agents[name].stderr.read()[-2000:]}")

            sender = net.b.python(FAST_FLOODER, net.a_ip4, "1")  # to port 1024: inside every set's range
            try:
                orders = list(itertools.permutations(names))
                for r in range(rounds):
                    order = [*orders[r % len(orders)], "floor"]
                    for name in order:
                        tell(name, "attach")
                    time.sleep(0.3)
                    figures.start(ids)
                    time.sleep(1.5)
                    figures.end(order[0])
                    for name in order:
                        tell(name, "detach")
            finally:
                stop(sender)
    finally:
        for agent in agents.values():
            try:
                agent.communicate(input="", timeout=60)
            except (subprocess.TimeoutExpired, ValueError):
                agent.kill()
        os.close(stats_fd)
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    print(f"{case}, {rounds} rounds of 1.5 s, one UDP sender flat out; load {os.getloadavg()[0]:.2f}")
    for n in names:
        first, paired = figures.first.get((n, ""), []), figures.paired[(n, "")]
        lead = f"{med(first):6.1f}" if first else "     -"
        print(
            f"{n:16} first in the chain: {lead} ns above the floor (n={len(first)})   paired, "
            f"against {names[0]}: "
            f"median {med(paired):+5.1f}  sd {statistics.pstdev(paired):4.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
