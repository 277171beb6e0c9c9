"""What the profiles source emits: stacks with tags, summarised per window or capture.

A stack is root-first function names with the tags of the process (or pprof labels)
it was sampled in. Tags are a sorted tuple of (key, value) pairs, so a tag set is
hashable, JSON-friendly and comparable. Keys in use: service, env, version, pid, comm,
container (from the process), trace_id, span_id and any other pprof label, and source
("bpf" or the pprof URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ebpftop.core.model import register_payload

Tags = tuple[tuple[str, str], ...]

# Tag values that say why a real value is missing (shown in the pane as they are).
UNREADABLE = "environment unreadable"
EXITED = "process exited"
KERNEL = "kernel thread"  # no environment to read: kernel threads have no user memory


def make_tags(pairs: dict[str, str] | Tags) -> Tags:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return tuple(sorted((str(k), str(v)) for k, v in items))


class WithSource:
    """A process's tags plus source=<source>, sorted once per tag set (a drain meets the
    same few tag sets over and over)."""

    def __init__(self, source: str) -> None:
        self._pair = (("source", source),)
        self._memo: dict[Tags, Tags] = {}

    def __call__(self, tags: Tags) -> Tags:
        full = self._memo.get(tags)
        if full is None:
            full = self._memo[tags] = make_tags(tags + self._pair)
        return full

    def clear(self) -> None:
        self._memo.clear()


def tag(tags: Tags, key: str, default: str | None = None) -> str | None:
    for k, v in tags:
        if k == key:
            return v
    return default


@dataclass(frozen=True)
class StackSample:
    frames: tuple[str, ...]  # root first, leaf last
    count: int  # samples
    tags: Tags = ()
    cpu_ns: int | None = None  # pprof's cpu/nanoseconds; None when the source has none


@dataclass(frozen=True)
class FunctionStat:
    name: str
    self_samples: int  # samples with this function as the leaf
    total_samples: int  # samples with this function anywhere on the stack (counted once)


@dataclass(frozen=True)
class TagGroup:
    tags: Tags
    samples: int
    share: float  # of the profile's samples, 0..1
    top: tuple[FunctionStat, ...] = ()


@dataclass(frozen=True)
class Profile:
    """One view of samples: a sliding BPF window, or one pprof/BPF capture."""

    name: str  # "bpf 10s", "bpf 60s", "pprof http://…", "capture service=checkout"
    source: str  # "bpf" or the pprof URL
    start: float  # wall time span the samples cover
    end: float
    total_samples: int
    stacks: tuple[StackSample, ...]  # the heaviest stacks, bounded
    groups: tuple[TagGroup, ...] = ()  # by the default tag keys, heaviest first
    omitted_samples: int = 0  # samples in stacks left out of `stacks` to bound the size
    total_cpu_ns: int | None = None


@dataclass(frozen=True)
class SourceStatus:
    """How one input of the profiles source is doing; the pane lists these."""

    name: str  # "bpf" or a pprof URL
    state: str  # "ok", "error", "off", "pending"
    message: str = ""  # why, when not ok
    last_ok: float | None = None
    hint: str = ""  # what to do about it


@dataclass(frozen=True)
class ProfilesData:
    hz: int | None  # BPF sampling frequency; None when the sampler is not running
    windows: tuple[Profile, ...] = ()  # BPF sliding windows, shortest first
    captures: tuple[Profile, ...] = ()  # latest pprof profile per URL, on-demand captures
    sources: tuple[SourceStatus, ...] = field(default_factory=tuple)
    lost_samples: int = 0  # samples whose stack could not be recorded (kernel map full...)


register_payload("profiles", ProfilesData)
