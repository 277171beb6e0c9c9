"""Python's view of flows.h: struct layouts and decoding of raw map bytes.

Raw keys stay bytes (hashable, cheap) through the per-tick maths; only the top N
are decoded into strings.
"""

from __future__ import annotations

import socket
import struct

# struct flow_key / flow_val / tcp_tuple / tcp_event in flows.h (native order, no padding
# beyond what the C has).
FLOW_KEY = struct.Struct("=16s16sIHHBBBx")
FLOW_KEY_BYTES = struct.Struct(f"{FLOW_KEY.size}s")  # a key as one bytes object (dict key)
FLOW_VAL = struct.Struct("=QQQQ")
TCP_TUPLE = struct.Struct("=16s16sHHB3x")
TCP_EVENT = struct.Struct("=QQIHH16s16s16sBB6x")

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp", 136: "udplite"}
PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}
DIRECTIONS = ("ingress", "egress")

# Event types (EV_* in flows.h)
EVENT_KINDS = {1: "connect", 2: "connect_fail", 3: "accept", 4: "close", 5: "retransmit"}


_V4_MAPPED = bytes(10) + b"\xff\xff"


def addr(family: int, raw: bytes) -> str:
    """Text form of an address; IPv4-mapped IPv6 (dual-stack sockets) reads as IPv4.
    (inet_ntop: this runs for every flow shown, every tick; ipaddress is 5x slower.)"""
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:16])
    return socket.inet_ntop(socket.AF_INET6, raw[:16])


def proto_name(num: int) -> str:
    return PROTO_NAMES.get(num, str(num))


def decode_key(raw: bytes) -> tuple[str, int, str, int, int, str, int]:
    """(src, sport, dst, dport, ifindex, direction, proto number)."""
    saddr, daddr, ifindex, sport, dport, proto, family, direction = FLOW_KEY.unpack(raw)
    return addr(family, saddr), sport, addr(family, daddr), dport, ifindex, DIRECTIONS[direction & 1], proto
