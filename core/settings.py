"""Every setting ebpftop has, with its default and what it means.

Only declarations; loading is `config.py`. A field declared with `setting(default,
"section", check=...)` and a description string under it is all a new setting needs:
file key, EBPFTOP_<NAME> variable, flag and `--help-config` follow from it.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .durations import check_window

THEMES = ("ebpftop-dark", "ebpftop-light", "ebpftop-high-contrast", "ebpftop-kiosk")

# A check returns None when the value is acceptable, else the reason it is not. It is
# never called with None: for an optional field, None (or "" in a file) means unset.
Check = Callable[[Any], "str | None"]


def setting(
    default: Any,
    section: str,
    key: str | None = None,
    *,
    check: Check | None = None,
    flag: str | None = None,
    requires: dict[str, tuple[str, ...]] | None = None,
) -> Any:
    """A Settings field that lives at `[section] key` in the TOML file.

    `requires` maps a value of this field to the fields that must then be set too
    (checked once every layer is read, so each may come from a different layer).
    """
    meta = {"section": section, "key": key, "check": check, "flag": flag, "requires": requires or {}}
    return field(default=default, metadata=meta)


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def between(lo: float, hi: float, *, lo_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        low_ok = value > lo if lo_open else value >= lo
        if low_ok and value <= hi:
            return None
        return f"must be {'>' if lo_open else '>='} {lo:g} and <= {hi:g}"

    return check


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def not_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def http_url(value: Any) -> str | None:
    """The one check of every URL setting: http(s), a host, a valid port, and brackets
    only around an IPv6 literal. urlsplit alone raises on some of these (ValueError
    from a setting check would be a traceback) and accepts others it should not."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "must not contain spaces or control characters"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL"
    hostport = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    if hostport.startswith("["):
        host, closed, after = hostport[1:].partition("]")
        if not closed:
            return "has '[' without ']' (brackets enclose an IPv6 address, e.g. http://[::1]:9090)"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"has {host!r} in brackets, which is not an IPv6 address"
        if after and not after.startswith(":"):
            return "has text after ']' that is not :PORT"
        port = after[1:]
    else:
        if "[" in hostport or "]" in hostport:
            return "has a bracket outside an IPv6 address (write one as http://[::1]:9090)"
        host, _, port = hostport.partition(":")
        if ":" in port:
            return "has an IPv6 address without brackets: write it as http://[::1]:9090"
    if not host:
        return "must name a host, e.g. http://127.0.0.1:9090"
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "has an invalid port (1-65535)"
    try:  # what the clients will parse it with must agree
        urllib.parse.urlsplit(value).port  # noqa: B018
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    return None


def http_urls(values: Any) -> str | None:
    """http_url for each of a list of URLs, naming the bad one."""
    return next((f"{u!r} {why}" for u in values if (why := http_url(u))), None)


def iface_names(value: Any) -> str | None:
    # Linux interface names: 1..15 bytes, no '/', no whitespace (IFNAMSIZ 16 with NUL).
    for name in value:
        if not name or len(name.encode()) > 15 or "/" in name or any(c.isspace() for c in name):
            return f"{name!r} is not an interface name (1-15 characters, no '/' or spaces)"
    return None


NODE_FIELDS = ("node", "host", "instance")


def node_template(value: Any) -> str | None:
    """A fleet command template: only {node}, {host} and {instance} placeholders."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write braces as {{{{ and }}}}"
    bad = [f for f in fields if f not in NODE_FIELDS]
    if bad:
        return f"names {{{bad[0]}}}: allowed {{node}}, {{host}}, {{instance}}"
    return None


@dataclass(frozen=True)
class Settings:
    # [ui]
    theme: str = setting("ebpftop-dark", "ui", check=one_of(*THEMES))
    """Theme name: ebpftop-dark, ebpftop-light, ebpftop-high-contrast, ebpftop-kiosk."""
    kiosk: bool = setting(False, "ui")
    """Read-only wall display: no action can run, no suspend, title says READ-ONLY."""
    refresh: float = setting(1.0, "ui", check=between(0, 60, lo_open=True))
    """Seconds between samples of each collector."""
    history: int = setting(300, "ui", check=between(1, 100_000))
    """Samples kept per source for charts and step-back (memory stays bounded)."""

    # [record]
    record: str | None = setting(None, "record", "path", check=not_empty)
    """Append everything the bus carries to this file."""
    record_max_mb: float = setting(256.0, "record", "max_mb", check=positive)
    """Stop recording (with a message) when the file reaches this size."""

    # [audit]
    audit_log: str = setting("/var/log/ebpftop/audit.jsonl", "audit", "log", check=not_empty)
    """Append-only, hash-chained, HMAC-signed log of every action."""
    audit_key: str = setting("/var/lib/ebpftop/audit.key", "audit", "key", check=not_empty)
    """HMAC key for the audit log; created on first use, readable by root only."""

    # [flows]
    ifaces: tuple[str, ...] = setting((), "flows", check=iface_names, flag="--iface")
    """Interfaces to watch; empty means every interface that is up."""

    # [canary]
    prometheus_url: str | None = setting(None, "canary", check=http_url)
    """Prometheus HTTP API base URL, e.g. http://127.0.0.1:9090."""
    prometheus_token_file: str | None = setting(None, "canary", "bearer_token_file", check=not_empty)
    """File holding a bearer token for Prometheus (a file, so it stays out of ps and shell history)."""
    prometheus_user: str | None = setting(None, "canary", "basic_auth_user", check=not_empty)
    """Basic-auth user for Prometheus; the password is read from basic_auth_password_file."""
    prometheus_password_file: str | None = setting(
        None, "canary", "basic_auth_password_file", check=not_empty
    )
    """File holding the basic-auth password for Prometheus."""
    prometheus_ca_file: str | None = setting(None, "canary", "tls_ca_file", check=not_empty)
    """CA bundle (PEM) that signs Prometheus' TLS certificate, for a private CA."""
    canary_services_file: str | None = setting(None, "canary", "services_file", check=not_empty)
    """TOML file of [[service]] tables (name, selector, variant_label, canary, stable, window,
    p99_query, error_ratio_query, ..., p99_max, ...); unset watches one service with the
    default metric names and a `version` or `track` label valued canary/stable."""
    canary_interval: float = setting(5.0, "canary", "evaluation_interval", check=between(0.5, 600))
    """Seconds between canary evaluations."""
    canary_timeout: float = setting(5.0, "canary", "query_timeout", check=between(0.1, 120))
    """Seconds each Prometheus query may take before it counts as failed."""
    canary_window: str = setting("1m", "canary", "evaluation_window", check=check_window)
    """Evaluation window: the range of rate()/increase() in the queries, e.g. 1m, 5m."""
    canary_p99_max: float = setting(1.2, "canary", "p99_max", check=positive)
    """The canary fails when its p99 latency stays above this many seconds."""
    canary_error_ratio_max: float = setting(0.005, "canary", "error_ratio_max", check=between(0, 1))
    """The canary fails when its 5xx ratio stays above this (0.005 = 0.5%)."""
    canary_p99_ratio_max: float = setting(1.2, "canary", "p99_ratio_max", check=positive)
    """The canary fails when its p99 stays above this multiple of stable's p99."""
    canary_persist: int = setting(3, "canary", "breaches_to_fail", check=between(1, 1000))
    """Consecutive breaching evaluations before the verdict turns to fail (a blip only warns)."""
    canary_history: bool = setting(True, "canary", "history_on_start")
    """At start and after a gap in evaluations, judge the breaches_to_fail window from Prometheus
    history (range queries) instead of waiting for that many live evaluations."""
    canary_min_requests: int = setting(20, "canary", "min_requests", check=between(0, 10**9))
    """Fewer canary requests than this in the window is too little to judge: no data."""

    # [rollout]
    rollout_controller: str | None = setting(
        None,
        "rollout",
        "controller",
        check=one_of("haproxy", "argo", "webhook"),
        # argo needs none: its kubeconfig falls back to in-cluster, $KUBECONFIG, ~/.kube/config.
        requires={"haproxy": ("rollout_haproxy_socket",), "webhook": ("rollout_webhook_url",)},
    )
    """What steers the canary's traffic: haproxy (needs haproxy_socket), argo or webhook (needs
    webhook_url); unset shows no rollout state."""
    rollout_service: str = setting("default", "rollout", "service", check=not_empty)
    """The service the controller steers (the canary service of the same name supplies the evidence);
    `ebpftop rollback SERVICE` and the confirmation ask for this name."""
    rollout_interval: float = setting(2.0, "rollout", "interval", check=between(0.2, 600))
    """Seconds between reads of the controller's state."""
    rollout_timeout: float = setting(5.0, "rollout", "timeout", check=between(0.1, 120))
    """Seconds each call to the controller may take."""
    rollout_haproxy_socket: str | None = setting(None, "rollout", "haproxy_socket", check=not_empty)
    """HAProxy runtime API: a socket path (stats socket ... level admin) or host:port."""
    rollout_haproxy_backend: str = setting("be_app", "rollout", "haproxy_backend", check=not_empty)
    """HAProxy backend holding the canary and stable servers."""
    rollout_haproxy_canary: tuple[str, ...] = setting(
        ("canary",), "rollout", "haproxy_canary_servers", check=not_empty
    )
    """Server names of the canary in that backend."""
    rollout_haproxy_stable: tuple[str, ...] = setting(("stable",), "rollout", "haproxy_stable_servers")
    """Server names of stable in that backend."""
    rollout_haproxy_mode: str = setting(
        "weight", "rollout", "haproxy_rollback_mode", check=one_of("weight", "drain", "maint")
    )
    """How rollback takes the canary servers out: weight 0 only, or weight 0 plus drain or maint."""
    rollout_argo_kubeconfig: str | None = setting(None, "rollout", "argo_kubeconfig", check=not_empty)
    """kubeconfig file; unset: the in-cluster service account, else $KUBECONFIG or ~/.kube/config."""
    rollout_argo_context: str | None = setting(None, "rollout", "argo_context", check=not_empty)
    """kubeconfig context; unset: its current-context."""
    rollout_argo_namespace: str | None = setting(None, "rollout", "argo_namespace", check=not_empty)
    """Namespace of the Rollout; unset: the context's namespace, else "default"."""
    rollout_argo_rollout: str | None = setting(None, "rollout", "argo_rollout", check=not_empty)
    """Name of the Argo Rollout; unset: the service name."""
    kube_node_name: str | None = setting(None, "rollout", "kube_node_name", check=not_empty)
    """This node's name in Kubernetes: identity names the pods listed for it (spec.nodeName), through
    the kubeconfig above; unset: the hostname in lower case, as the kubelet names a node by default.
    In a DaemonSet, set EBPFTOP_KUBE_NODE_NAME from the downward API (fieldRef spec.nodeName)."""
    # Not check=http_url itself: `ebpftop doctor` probes those, and its output lists them
    # by that identity; probing the webhook is left to doctor's owner (see issue 7 notes).
    rollout_webhook_url: str | None = setting(None, "rollout", "webhook_url", check=lambda v: http_url(v))
    """Webhook controller: GET for state, POST for rollback (see collectors/rollout/webhook.py)."""
    rollout_webhook_secret_file: str | None = setting(None, "rollout", "webhook_secret_file", check=not_empty)
    """File holding the HMAC key that signs webhook POSTs (X-Ebpftop-Signature)."""
    auto_rollback: bool = setting(False, "rollout", "auto_rollback", flag="--auto-rollback")
    """Roll back on its own when the verdict stays fail (after a visible, cancellable countdown)."""
    auto_rollback_evaluations: int = setting(
        3, "rollout", "auto_rollback_evaluations", check=between(1, 1000)
    )
    """Consecutive failing canary evaluations before the auto-rollback countdown starts."""
    auto_rollback_countdown: float = setting(
        30.0, "rollout", "auto_rollback_countdown", check=between(0, 3600)
    )
    """Seconds the countdown runs (any key cancels) before the rollback is sent."""

    # [lab]
    lab: bool = setting(False, "lab", "enabled")
    """Open the dashboard wired to `ebpftop lab` (bringing it up when it is not)."""

    # [profiles]
    profile_hz: int = setting(49, "profiles", "hz", check=between(0, 1000))
    """BPF CPU sampling frequency in Hz on every CPU; 0 turns the sampler off (pprof only)."""
    pprof_urls: tuple[str, ...] = setting((), "profiles", "pprof", flag="--pprof", check=http_urls)
    """pprof endpoints (Go net/http/pprof), e.g. http://127.0.0.1:6060; the CPU profile
    path /debug/pprof/profile is added to a bare host:port."""
    pprof_seconds: float = setting(10.0, "profiles", check=between(1, 300))
    """Length of each pprof CPU profile (the endpoint answers after this long)."""
    pprof_every: float = setting(60.0, "profiles", check=between(0, 86400))
    """Seconds from the start of one periodic pprof fetch to the next (equal to pprof_seconds:
    profiled without a gap); 0 fetches only on demand."""

    # [rules]
    rules_pin_dir: str = setting("/sys/fs/bpf/ebpftop/rules", "rules", "pin_dir", check=not_empty)
    """bpffs directory holding the enforced rule set: maps, programs and tcx links (they outlive ebpftop)."""
    rules_state_dir: str = setting("/var/lib/ebpftop/rules", "rules", "state_dir", check=not_empty)
    """Directory of the rules' metadata (author, created, TTL, comment), written atomically."""
    rules_ifaces: tuple[str, ...] = setting((), "rules", "ifaces", check=iface_names)
    """Interfaces rules without `on IFACE` apply to; empty means every interface that is up except lo
    (an interface a rule names is always included)."""

    # [fleet]
    fleet_url: str | None = setting(
        None, "fleet", "prometheus_url", check=lambda v: http_url(v), flag="--fleet"
    )  # not a source of this node: doctor does not probe it
    """The Prometheus that scrapes every node's agent (`ebpftop agent --metrics`): `ebpftop --fleet URL`
    opens the fleet view instead of the node's dashboard."""
    fleet_window: str = setting("1m", "fleet", "window", check=check_window)
    """Rate window of the fleet's columns (a Prometheus duration)."""
    fleet_interval: float = setting(2.0, "fleet", "interval", check=between(0.5, 600))
    """Seconds between the fleet's queries."""
    fleet_timeout: float = setting(5.0, "fleet", "query_timeout", check=between(0.1, 120))
    """Seconds each fleet query may take."""
    fleet_filter: str = setting("", "fleet", "filter")
    """The filter the view opens with, e.g. `service:checkout namespace:shop` (`/` changes it;
    checked by the fleet view, whose syntax it is)."""
    fleet_ssh_template: str = setting(
        "ssh -t {host} sudo ebpftop", "fleet", "ssh_template", check=lambda v: node_template(v)
    )
    """How to reach a node, shown by Enter: {node} (its name), {host} (its address), {instance}."""
    fleet_connect_template: str = setting(
        "ebpftop --connect {host}:9465 --token-file /etc/ebpftop/agent.token",
        "fleet",
        "connect_template",
        check=lambda v: node_template(v),
    )
    """How to view a node's agent from here, shown by Enter (its `ebpftop agent --listen` address)."""
    fleet_token_file: str | None = setting(None, "fleet", "bearer_token_file", check=not_empty)
    """Bearer token for the fleet's Prometheus, read from this file."""
    fleet_ca_file: str | None = setting(None, "fleet", "tls_ca_file", check=not_empty)
    """CA bundle (PEM) for the fleet Prometheus' TLS certificate."""
