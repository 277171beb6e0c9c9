"""`ebpftop` command line: the dashboard by default, verbs for everything else.

Each verb lives in `cli/commands/<verb>.py` with `register(subparsers)` and a `run(args)`
that returns the exit code; this file only wires them up, so verbs are added without
touching each other.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from .options import PrintAndExit

# Verb modules under ebpftop.cli.commands, in --help order.
VERBS = (
    "snapshot",
    "replay",
    "agent",
    "audit",
    "doctor",
    "lab",
    "cleanup",
    "rollback",
    "rules",
    "profile",
    "serve",
)

# What a shell reports for a writer killed by SIGPIPE (128 + 13); Python ignores the
# signal, so a closed stdout surfaces as BrokenPipeError instead.
EXIT_BROKEN_PIPE = 141


class _Version(PrintAndExit):
    """`--version`: `ebpftop X.Y.Z` from the installed package's metadata.

    Looked up only when asked: importing importlib.metadata costs every start ~30 ms.
    """

    def text(self, parser: argparse.ArgumentParser) -> str:
        from importlib import metadata

        try:
            version = metadata.version("ebpftop")
        except metadata.PackageNotFoundError:  # run from a source tree that was never installed
            version = "(not installed)"
        return f"ebpftop {version}\n"


def build_parser() -> argparse.ArgumentParser:
    from . import options

    parser = argparse.ArgumentParser(
        prog="ebpftop",
        description="Incident dashboard for a Linux node: flows, rule hits, canary state, profile tags.",
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    options.add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        importlib.import_module(f"ebpftop.cli.commands.{verb}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: a reader gone at the last write is caught too
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # a socket's, not ours to hide
        # `ebpftop doctor --json | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's own flush at exit cannot fail again (the Python
        # docs' recipe, library/signal.html "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None and getattr(args, "fleet", False):
        from .commands import fleet

        func = fleet.run
    elif func is None:
        from .commands import dashboard

        func = dashboard.run
    return int(func(args) or 0)


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (poll says POLLERR)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
