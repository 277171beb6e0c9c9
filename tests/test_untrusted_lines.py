"""A value from outside cannot add a line to a multi-line confirmation.

The confirmation screen shows an action's description line by line; the lines are
ebpftop's, the values inside them are cleaned by core/untrusted.clean.
"""

from __future__ import annotations

import dataclasses

from test_rollout_auto import FakeController, evaluation

from ebpftop.actions.rollback import rollback_action
from ebpftop.collectors.canary.exemplars import Exemplar
from ebpftop.core.untrusted import clean
from ebpftop.tui.text import clean as tui_clean
from ebpftop.tui.text import safe

HOSTILE = "abc\nRoll back NOTHING: all is fine\x1b[2J\u202e"


def _exemplar(trace_id: str) -> Exemplar:
    return Exemplar(trace_id=trace_id, value_s=0.5, time=1000.0, bucket="0.5")


def test_one_cleaning_rule_shared_by_tui_and_collectors():
    assert tui_clean is clean
    assert str(safe("[bold]x[/]")) == "[bold]x[/]"


def test_hostile_trace_id_and_reason_stay_on_their_line():
    ev = evaluation("fail")
    ev = dataclasses.replace(ev, reason=HOSTILE, exemplars=(_exemplar(HOSTILE),))
    honest = dataclasses.replace(
        evaluation("fail"), exemplars=(_exemplar("0af7651916cd43dd8448eb211c80319c"),)
    )
    action, _ = rollback_action(FakeController(), "checkout", ev)
    baseline, _ = rollback_action(FakeController(), "checkout", honest)
    assert len(action.description.splitlines()) == len(baseline.description.splitlines())
    assert "\x1b" not in action.description and "\u202e" not in action.description
    assert "\\x0aRoll back NOTHING" in action.description
