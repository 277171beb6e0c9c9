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

Pods (for collectors/identity/kube_pods.py), as the core API serves them:
- GET /api/v1/pods?fieldSelector=spec.nodeName=NODE&limit=N&continue=T: a PodList of
  that node's pods (items without kind/apiVersion), paged by `limit` with a `continue`
  token, `metadata.resourceVersion` the store's version at the list;
- the same with watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=S:
  a chunked stream of JSON lines {"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
  "object": ...} for that node's pods, ended after S seconds (or by `end_watch`); a
  resourceVersion older than the store keeps (`compact`) is 410 Gone, as an ERROR event
  carrying a Status (what the API server does) or, with `gone_as="status"`, as the
  HTTP answer itself;
- GET /apis/apps/v1/namespaces/NS/replicasets/NAME and /apis/batch/v1/namespaces/NS/jobs/NAME
  from `owners` (their metadata.ownerReferences), else 404.
`add_pod`, `modify_pod`, `delete_pod`, `bookmark` and `compact` change the store as the
cluster would, bumping the resourceVersion.
"""

from __future__ import annotations

import copy
import datetime
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ROLLOUTS = "/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts/{name}"
SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
PODS = "/api/v1/pods"
NODE = "node-a"


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


def cid(n: int) -> str:
    """A container id as the runtimes make them: 64 hex digits."""
    return f"{n:064x}"


def pod(
    ns: str,
    name: str,
    uid: str,
    *,
    node: str = NODE,
    owner: tuple[str, str] | None = None,
    labels: dict | None = None,
    containers: list[tuple[str, str]] = (),
    init: list[tuple[str, str]] = (),
    phase: str = "Running",
    version: int = 900,
) -> dict:
    """A Pod as the API returns it (the fields identity reads, and some it does not)."""
    meta = {
        "name": name,
        "namespace": ns,
        "uid": uid,
        "resourceVersion": str(version),
        "creationTimestamp": "2026-12-07T09:00:00Z",
        "labels": labels or {},
    }
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1" if owner[0] != "Job" else "batch/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(owner))),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    def statuses(pairs):
        return [
            {"name": n, "containerID": c, "ready": True, "restartCount": 0, "image": f"example/{n}:1"}
            for n, c in pairs
        ]

    status: dict = {"phase": phase, "qosClass": "Burstable", "podIP": "10.244.1.7", "hostIP": "192.0.2.10"}
    if containers:
        status["containerStatuses"] = statuses(containers)
    if init:
        status["initContainerStatuses"] = statuses(init)
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "containers": [{"name": n, "image": f"example/{n}:1"} for n, _ in containers],
        },
        "status": status,
    }


# uid -> what identity should make of it; node_pods() is the store, sample_owners() the owners.
UID = {
    "checkout": "3f1c9a52-6b7e-4d1a-9c55-0f2e8b6a1d01",
    "redis": "8a2b4c6d-1e3f-4a5b-8c7d-9e0f1a2b3c02",
    "kube-proxy": "c0ffee00-1234-4abc-9def-000000000003",
    "debug": "d3b06000-aaaa-4bbb-8ccc-000000000004",
    "report": "5e7a11ed-4321-4fed-8cba-000000000005",
    "legacy": "1e9ac700-5555-4666-8777-000000000006",
    "pending": "0e0e0e0e-0000-4000-8000-000000000007",
    "elsewhere": "e15e0000-9999-4999-8999-000000000008",
}


def node_pods() -> list[dict]:
    """A node with pods across namespaces, owned every way a node's pods are, and one pod
    on another node (never listed for NODE)."""
    return [
        pod(
            "shop",
            "checkout-7f9c6d5b8-x2x4z",
            UID["checkout"],
            owner=("ReplicaSet", "checkout-7f9c6d5b8"),
            labels={"app.kubernetes.io/name": "checkout", "pod-template-hash": "7f9c6d5b8", "team": "pay"},
            containers=[("app", f"containerd://{cid(1)}"), ("istio-proxy", f"containerd://{cid(2)}")],
            init=[("istio-init", f"containerd://{cid(3)}")],
        ),
        pod(
            "shop",
            "redis-0",
            UID["redis"],
            owner=("StatefulSet", "redis"),
            labels={"app": "redis", "statefulset.kubernetes.io/pod-name": "redis-0"},
            containers=[("redis", f"cri-o://{cid(4)}")],
        ),
        pod(
            "kube-system",
            "kube-proxy-9zk2p",
            UID["kube-proxy"],
            owner=("DaemonSet", "kube-proxy"),
            labels={"k8s-app": "kube-proxy"},
            containers=[("kube-proxy", f"docker://{cid(5)}")],
        ),
        pod("default", "debug", UID["debug"], containers=[("sh", f"containerd://{cid(6)}")]),
        pod(
            "batch",
            "report-29420100-q8v7d",
            UID["report"],
            owner=("Job", "report-29420100"),
            labels={"batch.kubernetes.io/job-name": "report-29420100"},
            containers=[("report", f"containerd://{cid(7)}")],
            phase="Succeeded",
        ),
        pod(
            "legacy",
            "web-5v8kq",
            UID["legacy"],
            owner=("ReplicaSet", "web-blue"),  # not <deployment>-<hash>: its owner is read
            labels={"app": "web"},
            containers=[("web", f"containerd://{cid(8)}")],
        ),
        pod(
            "shop",
            "checkout-7f9c6d5b8-pend1",
            UID["pending"],
            owner=("ReplicaSet", "checkout-7f9c6d5b8"),
            labels={"pod-template-hash": "7f9c6d5b8"},
            phase="Pending",
        ),
        pod(
            "shop",
            "checkout-7f9c6d5b8-other",
            UID["elsewhere"],
            node="node-b",
            owner=("ReplicaSet", "checkout-7f9c6d5b8"),
            labels={"pod-template-hash": "7f9c6d5b8"},
        ),
    ]


def sample_owners() -> dict[tuple[str, str, str], dict]:
    def obj(kind: str, api: str, ns: str, name: str, owner: tuple[str, str]) -> dict:
        return {
            "kind": kind,
            "apiVersion": api,
            "metadata": {
                "name": name,
                "namespace": ns,
                "ownerReferences": [{"kind": owner[0], "name": owner[1], "controller": True}],
            },
        }

    return {
        ("ReplicaSet", "legacy", "web-blue"): obj(
            "ReplicaSet", "apps/v1", "legacy", "web-blue", ("Deployment", "web")
        ),
        ("Job", "batch", "report-29420100"): obj(
            "Job", "batch/v1", "batch", "report-29420100", ("CronJob", "report")
        ),
    }


def gone_status() -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "too old resource version: 1000 (1042)",
        "reason": "Expired",
        "code": 410,
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
    query: dict = field(default_factory=dict)  # parse_qs of the query string


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
        self.version = 1000  # the store's resourceVersion
        self.oldest = 0  # resourceVersions below this are compacted away (410 Gone)
        self.gone_as = "event"  # or "status": how a watch from a compacted version is refused
        self.pods: dict[str, dict] = {p["metadata"]["uid"]: p for p in node_pods()}
        self.owners: dict[tuple[str, str, str], dict] = sample_owners()
        # Every event, in order: (type, object). A watch replays those after its resourceVersion
        # (the API server's watch cache), then follows new ones; END, RAW and ERROR go only to
        # the watches open when they happen.
        self.history: list[tuple[str, object]] = []
        self._changed = threading.Condition(self.lock)
        self._open = 0
        self.watching = threading.Event()  # set while a watch stream is open
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

    # -- what the cluster does to pods meanwhile ------------------------------------------

    def _emit(self, kind: str, obj: object) -> None:
        if isinstance(obj, dict) and kind != "ERROR":
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((kind, copy.deepcopy(obj)))
        self._changed.notify_all()

    def add_pod(self, pod: dict) -> None:
        with self.lock:
            self.pods[pod["metadata"]["uid"]] = pod
            self._emit("ADDED", pod)

    def modify_pod(self, uid: str, change) -> None:
        with self.lock:
            change(self.pods[uid])
            self._emit("MODIFIED", self.pods[uid])

    def delete_pod(self, uid: str) -> None:
        with self.lock:
            self._emit("DELETED", self.pods.pop(uid))

    def bookmark(self) -> str:
        """A BOOKMARK event: only a resourceVersion (the object is an empty Pod)."""
        with self.lock:
            self._emit("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": {}})
            return str(self.version)

    def compact(self) -> None:
        """etcd compaction: every version so far is gone; an open watch gets 410 as an ERROR event."""
        with self.lock:
            self.version += 1
            self.oldest = self.version
            self._emit("ERROR", gone_status())

    def send_raw(self, line: bytes) -> None:
        with self.lock:
            self._emit("RAW", line)

    def end_watch(self) -> None:
        """The API server ends the open watches (as at its timeoutSeconds)."""
        with self.lock:
            self._emit("END", None)

    def watches(self) -> list[Seen]:
        return [r for r in self.requests if r.path == PODS and r.query.get("watch") == ["1"]]

    def lists(self) -> list[Seen]:
        return [r for r in self.requests if r.path == PODS and r.query.get("watch") != ["1"]]

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
                path, _, qs = self.path.partition("?")
                query = parse_qs(qs)
                server.requests.append(Seen(self.command, path, dict(self.headers), body, query))
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
                if self.command == "GET" and path == PODS and query.get("watch") == ["1"]:
                    server._watch(self, query)
                    return
                if self.command == "GET" and path == PODS:
                    code, doc = server._list_pods(query)
                else:
                    code, doc = server._route(self.command, path, self.headers.get("Content-Type", ""), body)
                self._send(code, doc)

            do_GET = do_POST = do_PATCH = _handle

        return Handler

    def _selected(self, query: dict) -> str | None:
        sel = (query.get("fieldSelector") or [""])[0]
        key, _, value = sel.partition("=")
        return value if key == "spec.nodeName" else None

    def _list_pods(self, query: dict) -> tuple[int, dict]:
        node = self._selected(query)
        with self.lock:
            items = [
                copy.deepcopy(p)
                for p in self.pods.values()
                if node is None or p["spec"].get("nodeName") == node
            ]
            version = str(self.version)
        for item in items:  # a list's items carry no kind/apiVersion; the list does
            item.pop("kind", None)
            item.pop("apiVersion", None)
        start = int((query.get("continue") or ["0"])[0])
        limit = int((query.get("limit") or ["0"])[0]) or len(items)
        page = items[start : start + limit]
        meta = {"resourceVersion": version}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}

    def _watch(self, handler, query: dict) -> None:
        node = self._selected(query)
        since = int((query.get("resourceVersion") or ["0"])[0] or 0)
        seconds = float((query.get("timeoutSeconds") or ["30"])[0])
        if since < self.oldest and self.gone_as == "status":
            handler._send(410, gone_status())
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        def wanted(kind: str, obj) -> bool:
            if int(obj["metadata"]["resourceVersion"]) <= since:
                return False  # already in the list the watch started from
            return kind == "BOOKMARK" or not node or obj["spec"].get("nodeName") == node

        with self.lock:
            pos = len(self.history)
            backlog = [(k, o) for k, o in self.history if k in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")]
            self._open += 1
            self.watching.set()
        try:
            if since < self.oldest:
                chunk(json.dumps({"type": "ERROR", "object": gone_status()}).encode() + b"\n")
                chunk(b"")
                return
            for kind, obj in backlog:
                if wanted(kind, obj):
                    chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._release.is_set():
                with self.lock:
                    self._changed.wait_for(lambda seen=pos: len(self.history) > seen, timeout=0.05)
                    new, pos = self.history[pos:], len(self.history)
                for kind, obj in new:
                    if kind == "END":
                        deadline = 0.0
                        break
                    if kind == "RAW":  # what a broken or hostile server might send
                        chunk(obj)
                    elif kind == "ERROR":
                        chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                        deadline = 0.0
                        break
                    elif wanted(kind, obj):
                        chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            chunk(b"")
        except OSError:
            pass  # the client went away
        finally:
            with self.lock:
                self._open -= 1
                if not self._open:
                    self.watching.clear()

    def _owner(self, path: str) -> tuple[int, dict | str] | None:
        for kind, template in (
            ("ReplicaSet", "/apis/apps/v1/namespaces/"),
            ("Job", "/apis/batch/v1/namespaces/"),
        ):
            if path.startswith(template):
                ns, _, rest = path[len(template) :].partition("/")
                _, _, name = rest.partition("/")
                obj = self.owners.get((kind, ns, name))
                if obj is None:
                    return 404, status_doc(404, "NotFound", f'{kind.lower()}s "{name}" not found')
                return 200, copy.deepcopy(obj)
        return None

    def _route(self, method: str, path: str, ctype: str, body: bytes) -> tuple[int, dict | str]:
        owner = self._owner(path) if method == "GET" else None
        if owner is not None:
            return owner
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


def make_tls(directory: str, dns: tuple[str, ...] = ()) -> tuple[str, str, str]:
    """A private CA and a server certificate for 127.0.0.1 (or, given `dns`, for those names
    only, as a cluster whose certificate does not name the address): (ca_pem, cert_file, key_file)."""
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
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns] if dns else [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
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
