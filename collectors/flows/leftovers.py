"""Find and remove what ebpftop's flow datapath attached: for `ebpftop cleanup`.

Only the flows datapath's programs (`ebpftop_fl*`): policy rules are pinned on purpose
and their owner extends this. tcx links die with their process, so one that exists is
held by a running ebpftop (shown, detached only with `everything=True`, and only in
this network namespace). Netlink filters and pins can outlive their maker: those no
live process holds are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import tclegacy, tcx


@dataclass(frozen=True)
class Item:
    kind: str  # "tcx link" | "tc filter" | "pin"
    what: str
    holders: tuple[int, ...] = ()  # live pids holding it
    action: str = ""  # "removed" | "kept" | "failed: ..." | "would remove"


def _ifname(ifindex: int) -> str:
    for name in os.listdir("/sys/class/net"):
        try:
            with open(f"/sys/class/net/{name}/ifindex") as f:
                if int(f.read()) == ifindex:
                    return name
        except (OSError, ValueError):
            continue
    return f"ifindex {ifindex} (another network namespace?)"


def _netns(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def sweep(*, everything: bool = False, dry_run: bool = False) -> list[Item]:
    out: list[Item] = []
    here = _netns("self")
    for link in tcx.tcx_links(tclegacy.PROG_PREFIX):
        side = "ingress" if link.ingress else "egress"
        holders = tuple(tcx.link_holders(link.link_id))
        # Link ids are global but an ifindex means something only in its own network
        # namespace: judge by where the process holding the link lives.
        elsewhere = bool(holders) and all(_netns(p) != here for p in holders)
        where = f"ifindex {link.ifindex} in another network namespace" if elsewhere else _ifname(link.ifindex)
        what = f"{where} {side} link {link.link_id} prog {link.prog_name} (id {link.prog_id})"
        if holders and (not everything or elsewhere):
            out.append(Item("tcx link", what, holders, "kept"))
            continue
        action = "would remove"
        if not dry_run:
            try:
                tcx.link_detach_by_id(link.link_id)
                action = "removed"
            except OSError as exc:
                action = f"failed: {exc.strerror or exc}"
        out.append(Item("tcx link", what, holders, action))

    held = tclegacy.held_prog_ids()
    for f in tclegacy.all_filters():
        live = f.prog_id in held
        if live and not everything:
            out.append(Item("tc filter", f.describe(), (), "kept"))
            continue
        action = "would remove"
        if not dry_run:
            tclegacy.detach(f)
            still = any(g.prog_id == f.prog_id and g.ingress == f.ingress for g in tclegacy.filters(f.dev))
            action = "failed: still attached" if still else "removed"
        out.append(Item("tc filter", f.describe(), (), action))

    for pin in tclegacy.stale_pins():
        action = "would remove"
        if not dry_run:
            try:
                os.unlink(pin)
                action = "removed"
            except OSError as exc:
                action = f"failed: {exc.strerror}"
        out.append(Item("pin", pin, (), action))
    if not dry_run:
        # The netlink fallback's pin directory (and ebpftop's, when nothing else is in
        # it) is ours too: an empty one left behind is still a leftover.
        for d in (tclegacy.PIN_DIR, os.path.dirname(tclegacy.PIN_DIR)):
            try:
                os.rmdir(d)
            except OSError:
                break  # absent, or not empty: rules pins live beside it
    return out
