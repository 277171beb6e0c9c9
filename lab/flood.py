"""`python -m ebpftop.lab.flood --to ADDR --port N --rate BYTES`: paced UDP datagrams.

The lab's noisy neighbour (`ebpftop lab inject flood on`), run inside the client's
namespace. Paced in 100 slices a second so the rate is steady at any sample interval.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import time

DATAGRAM = 1200  # below the lab links' MTU: one datagram, one packet
SLICES = 100


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=int, required=True, help="bytes per second")
    args = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"n" * DATAGRAM
    per_slice = args.rate / DATAGRAM / SLICES
    start, sent, due = time.monotonic(), 0, 0.0
    print(f"flood: {args.rate} B/s of UDP to {args.to}:{args.port}", flush=True)
    while True:
        due += per_slice
        while sent < due:
            # an ICMP unreachable reported back fails one send; the next goes on
            with contextlib.suppress(OSError):
                s.sendto(payload, (args.to, args.port))
            sent += 1
        # paced on the clock: a late slice is caught up, not lost
        ahead = start + (due / per_slice) / SLICES - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


if __name__ == "__main__":
    main()
