"""Terminal output and confirmation for the verbs that change something (rules,
rollback): the gate's confirmation, asked on the terminal instead of a screen."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from ebpftop.core.gate import Action
from ebpftop.core.untrusted import clean


def say(text: str, *, err: bool = False) -> None:
    """Print untrusted text line by line, cleaned."""
    for line in str(text).splitlines() or [""]:
        print(clean(line), file=sys.stderr if err else sys.stdout, flush=True)


async def told(action: Action) -> bool:
    """--yes: say what is done, without asking."""
    say(action.description)
    return True


async def ask(action: Action, prompt: str, accepted: Callable[[str], bool], *, tty_only: bool = True) -> bool:
    """Say what will happen, then ask; False on end of input or a refusal. With
    `tty_only`, piped input never confirms (a script must say --yes)."""
    say(action.title)
    say(action.description)
    if tty_only and not sys.stdin.isatty():
        say("(stdin is not a terminal: not confirmed; pass --yes to apply without asking)", err=True)
        return False
    try:
        answer = await asyncio.to_thread(input, prompt)
    except EOFError:
        return False
    return accepted(answer.strip())
