"""The OpenTelemetry resource of a process, from its environment (the SDK's own rules).

OTEL_RESOURCE_ATTRIBUTES is comma-separated key=value with percent-encoded values
(the spec's "W3C Baggage octet range"), so `service.name=check%20out` is the service
`check out`; OTEL_SERVICE_NAME, when set, wins over service.name.
"""

from __future__ import annotations

import urllib.parse

# OTel resource attribute -> ebpftop key. deployment.environment.name is the newer
# semantic-convention spelling; either is accepted. The canary/stable track has no
# attribute of its own: on Kubernetes it is a pod label (`track: canary` in the
# canary-deployment pattern), which reaches the resource as k8s.pod.label.track.
RESOURCE_KEYS = {
    "service.name": "service",
    "service.version": "version",
    "deployment.environment": "env",
    "deployment.environment.name": "env",
    "k8s.pod.label.track": "track",
}
MAX_VALUE = 256  # characters kept of any one value


def parse_resource_attributes(text: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: comma-separated key=value, values percent-encoded.

    Entries without '=' or with an empty key are skipped, as the SDKs do.
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        out[key] = urllib.parse.unquote(value.strip())
    return out


def otel_tags(environ: dict[str, str]) -> dict[str, str]:
    """service/version/env/track from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES."""
    out: dict[str, str] = {}
    attrs = parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    for attr, key in RESOURCE_KEYS.items():
        if attrs.get(attr):
            out[key] = attrs[attr]
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        out["service"] = name
    return {k: v[:MAX_VALUE] for k, v in out.items()}


def service_from_environ(environ: dict[str, str]) -> str | None:
    return otel_tags(environ).get("service")


def parse_environ(raw: bytes) -> dict[str, str]:
    """/proc/PID/environ: NUL-separated KEY=VALUE, any bytes."""
    env: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env
