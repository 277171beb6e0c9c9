"""Small HTTP calls from the lab's control side (root namespace) to its parts.

Proxies from the environment are ignored on purpose: every lab address is local, and
an operator's http_proxy must not route a lab request off the machine.
"""

from __future__ import annotations

import urllib.error
import urllib.request

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    timeout: float = 2.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body); HTTP error statuses are returned, connection failures raise OSError."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from None


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return fetch(url, timeout=timeout)[0] == 200
    except OSError:
        return False
