"""Find and remove what ebpftop's flow datapath attached: for `ebpftop cleanup`.

tcx links die with their process, so one that exists is held by a running ebpftop
(shown, detached only with `everything=True`). Netlink filters and pins can outlive
their maker: those no live process holds are removed.
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


def sweep(*, everything: bool = False, dry_run: bool = False) -> list[Item]:
    out: list[Item] = []
    for link in tcx.tcx_links(tclegacy.PREFIX):
        side = "ingress" if link.ingress else "egress"
        what = f"{_ifname(link.ifindex)} {side} link {link.link_id} prog {link.prog_name} (id {link.prog_id})"
        holders = tuple(tcx.link_holders(link.link_id))
        if not everything and holders:
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
    return out
