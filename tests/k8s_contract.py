"""A local stand-in for a Kubernetes API server with Argo Rollouts installed.

No real API server can run here, so the Argo controller is tested against this: a
small HTTP(S) server that follows the documented endpoints and failure answers:
- GET  /apis/argoproj.io/v1alpha1/namespaces/NS/rollouts/NAME            (Rollout)
- PATCH the same path and its /status subresource, JSON merge patch only (415 otherwise);
  a `metadata.resourceVersion` in the patch is a precondition (409 Conflict when stale);
  a non-boolean status.abort is 422 Invalid with causes, like CRD schema validation;
  without a status subresource (`status_subresource=False`) /status is 404
- POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews              (SSAR)
- a bearer token other than `token` is 401; errors are `Status` objects
  (kind Status, status Failure, message, reason, code, details.causes).
`faults` injects answers (403, 429 with Retry-After, 500, a stall for timeouts) for
the next matching requests. Every request is kept in `requests`.
"""

from __future__ import annotations

import copy
import datetime
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLLOUTS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts/{name}"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def sample_rollout(ns: str = "shop", name: str = "checkout") -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "100"},
        "spec": {
            "strategy": {
                "canary": {
                    "steps": [
                        {"setWeight": 20},
                        {"pause": {}},
                        {"setWeight": 50},
                        {"pause": {"duration": "1m"}},
                    ]
                }
            }
        },
        "status": {
            "phase": "Paused",
            "message": "CanaryPauseStep",
            "currentStepIndex": 1,
            "stableRS": "6d4f8b7c9",
            "currentPodHash": "7f9c6d5b8",
            "canary": {
                "weights": {
                    "canary": {"weight": 20, "podTemplateHash": "7f9c6d5b8"},
                    "stable": {"weight": 80, "podTemplateHash": "6d4f8b7c9"},
                }
            },
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "lastUpdateTime": "2026-11-22T02:00:00Z",
                    "lastTransitionTime": "2026-11-22T01:59:00Z",
                }
            ],
        },
    }


def status_doc(code: int, reason: str, message: str, causes: list | None = None) -> dict:
    doc = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if causes:
        doc["details"] = {"causes": causes}
    return doc


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and left: expected in the timeout tests


@dataclass
class Fault:
    method: str
    path_suffix: str  # matched with endswith
    status: int = 500
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering (for client timeouts)
    times: int = 1


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes


class ContractServer:
    def __init__(
        self,
        *,
        token: str = "good-token",
        ns: str = "shop",
        name: str = "checkout",
        status_subresource: bool = True,
        allowed: bool = True,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.token = token
        self.ns, self.name = ns, name
        self.path = ROLLOUTS.format(ns=ns, name=name)
        self.rollout: dict | None = sample_rollout(ns, name)
        self.status_subresource = status_subresource
        self.allowed = allowed
        self.deny_reason = "RBAC: role rollouts-viewer does not allow patch on rollouts/status"
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        host, port = self._httpd.server_address[:2]
        self.url = f"{scheme}://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> ContractServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # -- what a controller would do meanwhile ------------------------------------------

    def bump(self, **status_changes) -> None:
        """The Rollout changes on the server (its controller moved it on)."""
        with self.lock:
            self.rollout["status"].update(status_changes)
            self._next_version()

    def _next_version(self) -> None:
        meta = self.rollout["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def patches(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "PATCH"]

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, doc, headers: dict | None = None) -> None:
                body = doc.encode() if isinstance(doc, str) else json.dumps(doc).encode()
                self.send_response(code)
                self.send_header(
                    "Content-Type", "application/json" if not isinstance(doc, str) else "text/plain"
                )
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                server.requests.append(Seen(self.command, path, dict(self.headers), body))
                for fault in server.faults:
                    if fault.times > 0 and fault.method == self.command and path.endswith(fault.path_suffix):
                        fault.times -= 1
                        if fault.stall:
                            server._release.wait(fault.stall)
                        self._send(
                            fault.status,
                            fault.body
                            if fault.body is not None
                            else status_doc(fault.status, "Injected", f"injected {fault.status}"),
                            fault.headers,
                        )
                        return
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    self._send(401, status_doc(401, "Unauthorized", "Unauthorized"))
                    return
                code, doc = server._route(self.command, path, self.headers.get("Content-Type", ""), body)
                self._send(code, doc)

            do_GET = do_POST = do_PATCH = _handle

        return Handler

    def _route(self, method: str, path: str, ctype: str, body: bytes) -> tuple[int, dict | str]:
        if method == "POST" and path == SSAR:
            review = json.loads(body)
            attrs = review["spec"]["resourceAttributes"]
            review["status"] = {"allowed": self.allowed and attrs.get("verb") == "patch"}
            if not review["status"]["allowed"]:
                review["status"]["reason"] = self.deny_reason
            return 201, review
        base = ROLLOUTS.format(ns=self.ns, name="")
        if not path.startswith(base):
            return 404, "404 page not found"
        rest = path[len(base) :]
        name, _, sub = rest.partition("/")
        with self.lock:
            if self.rollout is None or name != self.name:
                return 404, status_doc(404, "NotFound", f'rollouts.argoproj.io "{name}" not found')
            if method == "GET" and not sub:
                return 200, copy.deepcopy(self.rollout)
            if (
                method != "PATCH"
                or sub not in ("", "status")
                or (sub == "status" and not self.status_subresource)
            ):
                return 404, "404 page not found"
            if ctype != "application/merge-patch+json":
                return 415, status_doc(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
                )
            try:
                patch = json.loads(body)
            except ValueError:
                return 400, status_doc(400, "BadRequest", "error decoding patch")
            version = (patch.get("metadata") or {}).get("resourceVersion")
            if version is not None and version != self.rollout["metadata"]["resourceVersion"]:
                return 409, status_doc(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on rollouts.argoproj.io "
                    f'"{name}": the object has been modified; please apply your changes to '
                    f"the latest version and try again",
                )
            abort = (patch.get("status") or {}).get("abort")
            if abort is not None and not isinstance(abort, bool):
                return 422, status_doc(
                    422,
                    "Invalid",
                    f'Rollout.argoproj.io "{name}" is invalid: status.abort: '
                    'Invalid value: "string": status.abort in body must be of type boolean',
                    [
                        {
                            "reason": "FieldValueTypeInvalid",
                            "field": "status.abort",
                            "message": "Invalid value: must be of type boolean",
                        }
                    ],
                )
            if abort:
                st = self.rollout["status"]
                st.update(
                    abort=True,
                    phase="Degraded",
                    message="RolloutAborted: Rollout aborted update to revision 2",
                    canary={"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}},
                )
                st["conditions"][0]["lastUpdateTime"] = datetime.datetime.now(datetime.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                self._next_version()
            return 200, copy.deepcopy(self.rollout)


def make_tls(directory: str) -> tuple[str, str, str]:
    """A private CA and a server certificate for 127.0.0.1: (ca_pem, cert_file, key_file)."""
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ebpftop test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file
