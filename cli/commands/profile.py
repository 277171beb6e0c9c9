"""`ebpftop profile`: one CPU profile of every process over a fixed span, no UI.

Samples every CPU for `--duration` seconds (Ctrl-C stops early and still reports), then
names and tags the stacks once: no work while it samples, like bcc's `profile` tool.
Output: a table of tag sets with their top functions (default), folded stacks for
flame graph tools (`--folded`), or the Profile as JSON (`--json`, the shape
`snapshot --json` uses for its windows); `--pprof FILE` also writes it as gzip'd pprof.
Exit 0 with a profile, 1 when the sampler cannot run or FILE cannot be written (the
reason on stderr), 2 on bad usage. Never imports Textual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from ebpftop.cli.options import seconds

if TYPE_CHECKING:
    from ebpftop.collectors.profiles.oneshot import OneShot


def _hz(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of samples a second: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be 1..1000 Hz, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "profile",
        help="sample every CPU for a while and print one tagged profile (needs root)",
        description="Sample every CPU for a while, then print one profile tagged by service, env, "
        "version and pid.",
        epilog="Exit status: 0 a profile was printed; 1 the BPF sampler could not run (reason on stderr); "
        "2 bad usage.",
    )
    p.add_argument(
        "--duration",
        type=seconds(86400, zero=False),
        default=10.0,
        metavar="S",
        help="seconds to sample (default 10; Ctrl-C stops early)",
    )
    p.add_argument("--hz", type=_hz, default=49, help="samples a second on each CPU (default 49)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument(
        "--folded", action="store_true", help="folded stacks (comm;root;...;leaf count), heaviest first"
    )
    fmt.add_argument("--json", action="store_true", help="the profile as one JSON document")
    p.add_argument("--top", type=int, default=5, metavar="N", help="functions listed per tag set (default 5)")
    p.add_argument(
        "--pprof",
        metavar="FILE",
        help="also write the profile to FILE as gzip'd pprof (go tool pprof, Pyroscope, Parca), "
        "its tags as labels",
    )
    p.set_defaults(func=run)


def _text(shot: OneShot) -> str:
    from ebpftop.core.untrusted import clean

    prof = shot.profile
    head = f"{prof.total_samples} samples at {shot.hz} Hz over {shot.seconds:.1f} s" + (
        " (stopped early)" if shot.interrupted else ""
    )
    if any(shot.lost):
        head += f"; lost: {shot.lost[0]} with no room in the counts map, {shot.lost[1]} without a stack"
    lines = [head]
    for g in prof.groups:
        label = " ".join(f"{k}={v}" for k, v in g.tags if k != "source") or "(no tags)"
        lines.append(f"{g.share * 100:5.1f}% {g.samples:>7}  {clean(label, 120)}")
        for f in g.top:
            lines.append(f"{'':15}{f.self_samples:>7} self {f.total_samples:>7} total  {clean(f.name, 100)}")
    if not prof.groups:
        lines.append("no samples: nothing ran on a CPU, or every sample was lost")
    return "\n".join(lines)


def _folded(shot: OneShot) -> str:
    from ebpftop.collectors.profiles.aggregate import folded
    from ebpftop.collectors.profiles.model import StackSample, tag
    from ebpftop.core.untrusted import clean

    # bcc's `profile -f` form: the process name as the root frame. ';' and ' ' separate
    # frames and the count, so they cannot appear inside one.
    def frame(s: str) -> str:
        return clean(s).replace(";", ":").replace(" ", "_")

    return "\n".join(
        folded(
            StackSample((frame(tag(s.tags, "comm") or "?"), *map(frame, s.frames)), s.count)
            for s in shot.profile.stacks
        )
    )


def _unwritable(path: str) -> str | None:
    """Why `path` cannot be written, or None."""
    from ebpftop.core.untrusted import clean

    if os.path.isdir(path):
        return "is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"no such directory: {clean(parent)}"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def _write_pprof(path: str, shot: OneShot) -> None:
    """Write whole or not at all: a reader never meets half a profile."""
    from ebpftop.collectors.profiles.pprof_write import pprof_bytes

    data = pprof_bytes(shot.profile, shot.hz)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run(args: argparse.Namespace) -> int:
    from ebpftop.collectors.profiles.oneshot import sample
    from ebpftop.collectors.profiles.sampler import SamplerUnavailable
    from ebpftop.core.codec import to_jsonable
    from ebpftop.core.untrusted import clean

    if args.top < 0:
        print("ebpftop profile: --top must be 0 or more", file=sys.stderr)
        return 2
    if args.pprof is not None and (problem := _unwritable(args.pprof)):
        # said before sampling: a long profile is not lost to a typo in the path
        print(f"ebpftop profile: --pprof {clean(args.pprof)}: {problem}", file=sys.stderr)
        return 2
    whole = args.folded or args.pprof is not None
    try:
        shot = sample(args.hz, args.duration, max_stacks=10_000 if whole else 400, top_n=args.top)
    except SamplerUnavailable as exc:
        hint = f" ({clean(exc.hint)})" if exc.hint else ""
        print(f"ebpftop profile: {clean(exc.message)}{hint}", file=sys.stderr)
        return 1
    if args.pprof is not None:
        try:
            _write_pprof(args.pprof, shot)
        except OSError as exc:
            why = exc.strerror or exc
            print(f"ebpftop profile: cannot write {clean(args.pprof)}: {why}", file=sys.stderr)
            return 1
    if args.json:
        doc = {
            "hz": shot.hz,
            "seconds": round(shot.seconds, 3),
            "interrupted": shot.interrupted,
            "lost_samples": {"no_room": shot.lost[0], "no_stack": shot.lost[1]},
            "profile": to_jsonable(shot.profile),
        }
        print(json.dumps(doc, ensure_ascii=True, default=str))
    elif args.folded:
        out = _folded(shot)
        if out:
            print(out)
    else:
        print(_text(shot))
    return 0
