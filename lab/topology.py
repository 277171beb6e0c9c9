"""Network namespaces, the lab bridge and veth links, through iproute2.

Only `ip` is used (the tool an operator would use to inspect the result), with JSON
output where something is read back.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable

from .errors import LabError
from .layout import PARTS, Layout


def ip(
    layout: Layout, *args: str, part: str = "network", check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run([layout.config.ip_bin, *args], capture_output=True, text=True, timeout=15)
    except FileNotFoundError:
        raise LabError(part, f"{layout.config.ip_bin!r} not found (install iproute2: make setup)") from None
    if check and proc.returncode != 0:
        raise LabError(part, f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def existing_namespaces(layout: Layout) -> list[str]:
    out = ip(layout, "-j", "netns", "list").stdout.strip()
    names = [n["name"] for n in json.loads(out)] if out else []
    return sorted(n for n in names if n.startswith(layout.prefix))


def existing_links(layout: Layout) -> list[str]:
    out = ip(layout, "-j", "link", "show").stdout.strip()
    names = [ln["ifname"] for ln in json.loads(out)] if out else []
    return sorted(n for n in names if n.startswith(layout.prefix))


def check_subnet_free(layout: Layout) -> None:
    """The lab's subnet must not overlap any route the host already has."""
    ours = layout.network
    out = ip(layout, "-j", "-4", "route", "show", "table", "all").stdout.strip()
    for route in json.loads(out) if out else []:
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if (
            dst in ("default", "")
            or dev.startswith(layout.prefix)
            or route.get("type") in ("broadcast", "local")
        ):
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
        except ValueError:
            continue
        if net.overlaps(ours):
            raise LabError(
                "network",
                f"subnet {ours} overlaps the host route {dst} on {dev}; choose another with --subnet",
            )


def namespace_pids(layout: Layout, netns: str) -> list[int]:
    proc = ip(layout, "netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def create(layout: Layout, record: Callable[[str, str], None]) -> None:
    """Build the topology; `record(kind, name)` is called right after each object exists."""
    br = layout.bridge
    ip(layout, "link", "add", br, "type", "bridge")
    record("link", br)
    ip(layout, "addr", "add", layout.cidr("bridge"), "dev", br)
    ip(layout, "link", "set", br, "up")
    for part in PARTS:
        ns, veth = layout.netns(part), layout.veth(part)
        ip(layout, "netns", "add", ns)
        record("netns", ns)
        ip(layout, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        record("link", veth)
        ip(layout, "link", "set", veth, "master", br, "up")
        ip(layout, "-n", ns, "link", "set", "lo", "up")
        ip(layout, "-n", ns, "addr", "add", layout.cidr(part), "dev", "eth0")
        ip(layout, "-n", ns, "link", "set", "eth0", "up")


def delete_namespace(layout: Layout, ns: str) -> bool:
    """Deleting a namespace also deletes the veth peer inside it, and so the pair."""
    return ip(layout, "netns", "delete", ns, check=False).returncode == 0


def delete_link(layout: Layout, name: str) -> bool:
    return ip(layout, "link", "delete", name, check=False).returncode == 0


def status(layout: Layout) -> dict[str, bool]:
    """Which of the lab's namespaces and links exist, and whether links are up."""
    have_ns = set(existing_namespaces(layout))
    out = ip(layout, "-j", "link", "show").stdout.strip()
    links = {ln["ifname"]: ln for ln in json.loads(out)} if out else {}
    result = {f"netns {ns}": ns in have_ns for ns in layout.namespaces}
    for name in layout.links:
        result[f"link {name}"] = name in links and "UP" in links[name].get("flags", [])
    return result
