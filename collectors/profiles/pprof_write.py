"""A tagged CPU profile as a gzip'd pprof Profile (profile.proto), for `go tool pprof`,
Pyroscope and Parca: the reverse of pprof.py's parse. Pure: bytes in memory, no I/O.

Each stack becomes one sample with two values, samples/count and cpu/nanoseconds
(the sample's own cpu_ns when its source measured it, else count x period), and its
tags as string labels (service, env, version, trace_id, pid, comm, pod... whatever
the window carries; `source` is left out: it is the same for every sample). The
period is one sampling interval, 1/hz seconds, in cpu/nanoseconds. The samples a
window dropped to bound its size (`omitted_samples`) become one sample whose only
frame is OMITTED, so the totals match what was sampled.
"""

from __future__ import annotations

import gzip
from collections.abc import MutableSequence

from .model import Profile
from .pprof import _profile_module

OMITTED = "[stacks left out of the window]"
MAX_LABEL = 256  # characters of a label value, as pprof.py keeps on reading


class _Strings:
    """pprof's string table: index 0 is "", every string once."""

    def __init__(self, table: MutableSequence[str]) -> None:
        self._table = table
        self._index: dict[str, int] = {}
        self("")

    def __call__(self, text: str) -> int:
        i = self._index.get(text)
        if i is None:
            i = self._index[text] = len(self._table)
            self._table.append(text)
        return i


def pprof_bytes(profile: Profile, hz: int, *, level: int = 6) -> bytes:
    """The profile as a gzip'd profile.proto message. `hz`: samples a second on each
    CPU, so one sample stands for 1/hz seconds of CPU."""
    if hz <= 0:
        raise ValueError(f"hz must be positive, got {hz}")
    pb = _profile_module().Profile()
    strings = _Strings(pb.string_table)
    period_ns = round(1e9 / hz)
    pb.sample_type.add(type=strings("samples"), unit=strings("count"))
    pb.sample_type.add(type=strings("cpu"), unit=strings("nanoseconds"))
    pb.period_type.type = strings("cpu")
    pb.period_type.unit = strings("nanoseconds")
    pb.period = period_ns
    pb.time_nanos = round(profile.start * 1e9)
    pb.duration_nanos = max(0, round((profile.end - profile.start) * 1e9))
    pb.comment.append(strings(f"ebpftop {profile.name}"))

    locations: dict[str, int] = {}  # frame name -> location id (= its function id)

    def location(name: str) -> int:
        lid = locations.get(name)
        if lid is None:
            lid = locations[name] = len(locations) + 1
            s = strings(name)
            pb.function.add(id=lid, name=s, system_name=s)
            pb.location.add(id=lid).line.add(function_id=lid)
        return lid

    for stack in profile.stacks:
        if stack.count <= 0:
            continue
        sample = pb.sample.add()
        sample.location_id.extend(location(f) for f in reversed(stack.frames or ("[no frames]",)))
        cpu = stack.cpu_ns if stack.cpu_ns is not None else stack.count * period_ns
        sample.value.extend((stack.count, cpu))
        for key, value in stack.tags:
            if key != "source":
                sample.label.add(key=strings(key), str=strings(value[:MAX_LABEL]))
    if profile.omitted_samples > 0:
        sample = pb.sample.add()
        sample.location_id.append(location(OMITTED))
        sample.value.extend((profile.omitted_samples, profile.omitted_samples * period_ns))
    return gzip.compress(pb.SerializeToString(), compresslevel=level, mtime=0)
