"""Deterministic packet loss on one interface for a test (tests/bpf/lossy.bpf.c).

Run inside the namespace that owns the interface (it attaches by ifindex):

    ns.popen(PYTHON, "tests/lossy.py", IFACE, PORT, EVERY, MAX, stdin=PIPE, bpf=True)

It prints "ready" once attached to the interface's ingress, holds the tcx link until
stdin closes, then prints the drop count as JSON and exits; the link goes with the
process, so a killed helper leaves nothing behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(iface: str, port: int, every: int, most: int) -> int:
    from bcc import BPF

    from ebpftop.collectors.flows import tcx

    b = BPF(
        src_file=str(HERE / "bpf" / "lossy.bpf.c").encode(),
        cflags=[f"-DLOSSY_PORT={port}", f"-DLOSSY_EVERY={every}", f"-DLOSSY_MAX={most}"],
    )
    fn = b.load_func("lossy_drop", BPF.SCHED_CLS)
    link = tcx.attach(fn.fd, int(Path(f"/sys/class/net/{iface}/ifindex").read_text()), True)
    print("ready", flush=True)
    sys.stdin.read()
    tcx.detach(link)
    stats = b["lossy_stats"]
    print(json.dumps({"seen": stats[stats.Key(0)].value, "dropped": stats[stats.Key(1)].value}), flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], *(int(a) for a in sys.argv[2:5])))
