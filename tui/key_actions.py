"""What every key-bound action of the app is, apart from which key runs it.

`acts=True` marks an action that changes something outside the display (adds a
marker, a rule, rolls back a canary...). Those are the ones read-only/kiosk mode
hides and refuses; everything else only changes what this screen shows. Key maps live
in `bindings.py`; the help screen and the footer are generated from both, so they
cannot drift from what the keys do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    name: str  # the Textual action string the key runs, e.g. "focus_pane(1)"
    title: str  # footer label
    help: str  # one line for the help screen
    acts: bool = False  # changes the outside world: gated, absent in read-only mode
    replay: bool = False  # only meaningful when replaying a recording
    group: str = "View"


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("help", "Help", "show this list of keys", group="App"),
    ActionSpec("toggle_pause", "Pause", "freeze the display (collection continues); again to resume"),
    ActionSpec("focus_pane(1)", "Flows", "focus the Flows pane", group="Panes"),
    ActionSpec("focus_pane(2)", "Rules", "focus the Rules pane", group="Panes"),
    ActionSpec("focus_pane(3)", "Canary", "focus the Canary pane", group="Panes"),
    ActionSpec("focus_pane(4)", "Profiles", "focus the Profiles pane", group="Panes"),
    ActionSpec("focus_next", "Next", "focus the next pane", group="Panes"),
    ActionSpec("focus_previous", "Previous", "focus the previous pane", group="Panes"),
    ActionSpec("cycle_theme", "Theme", "switch to the next ebpftop theme"),
    ActionSpec(
        "own_cost",
        "Own cost",
        "ebpftop's own cost: CPU, memory, terminal output, losses, BPF run time per program "
        "(kernel BPF stats on while it is open)",
    ),
    ActionSpec("command_palette", "Palette", "command palette (themes, help, quit)", group="App"),
    ActionSpec("replay_step(-1)", "Back", "replay: step back one sample", replay=True, group="Replay"),
    ActionSpec("replay_step(1)", "Fwd", "replay: step forward one sample", replay=True, group="Replay"),
    ActionSpec("replay_slower", "Slower", "replay: halve the speed", replay=True, group="Replay"),
    ActionSpec("replay_faster", "Faster", "replay: double the speed", replay=True, group="Replay"),
    ActionSpec(
        "marker",
        "Marker",
        "add an incident marker (asks for text, confirms, audited)",
        acts=True,
        group="Actions",
    ),
    ActionSpec(
        "rollback",
        "Rollback",
        "roll the canary back, all traffic to stable (shows evidence and plan, "
        "type the service name; audited)",
        acts=True,
        group="Actions",
    ),
    ActionSpec(
        "undo_rollback",
        "Undo rollback",
        "undo ebpftop's last rollback: set back exactly the weights it changed (shows them, "
        "type the service name; audited)",
        acts=True,
        group="Actions",
    ),
    # Rules pane keys (bound in tui/panes/rules/pane.py, active while that pane has focus).
    ActionSpec(
        "add_rule",
        "Add rule",
        "add a rule (validated, previewed, confirmed, audited)",
        acts=True,
        group="Rules",
    ),
    ActionSpec(
        "edit_rule", "Edit rule", "edit the selected rule (confirmed, audited)", acts=True, group="Rules"
    ),
    ActionSpec(
        "delete_rule",
        "Delete rule",
        "delete the selected rule (confirmed, audited)",
        acts=True,
        group="Rules",
    ),
    ActionSpec(
        "toggle_rule",
        "count/deny",
        "switch the selected rule between count and deny (confirmed, audited)",
        acts=True,
        group="Rules",
    ),
    # Flows pane key (bound in tui/panes/flows/pane.py, built in tui/panes/flows/to_rule.py).
    ActionSpec(
        "flow_rule",
        "Rule from flow",
        "a count rule matching the selected flow or group, in the rule editor (ctrl+t: deny for 15m; "
        "confirmed, audited)",
        acts=True,
        group="Flows",
    ),
    ActionSpec(
        "suspend_process",
        "Suspend",
        "suspend to the shell; `fg` resumes (off in read-only mode)",
        group="App",
    ),
    ActionSpec("quit", "Quit", "quit ebpftop (collectors stop; pinned rules stay)", group="App"),
)

_BY_NAME = {a.name: a for a in ACTIONS}


def spec(action: str) -> ActionSpec | None:
    """The spec for an action string as Textual passes it ("focus_pane(1)" or "marker")."""
    return _BY_NAME.get(action)


def acting_names() -> frozenset[str]:
    """Bare action names (no parameters) that change the outside world."""
    return frozenset(a.name.split("(")[0] for a in ACTIONS if a.acts)


def replay_names() -> frozenset[str]:
    return frozenset(a.name.split("(")[0] for a in ACTIONS if a.replay)
