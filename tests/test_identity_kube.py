"""The pod mapping (collectors/identity/kube_pods.py) against tests/k8s_contract.py.

No real Kubernetes API server can run here: the contract server follows the documented
core API (a PodList paged with limit/continue and filtered by fieldSelector, a watch
stream of ADDED/MODIFIED/DELETED/BOOKMARK events, 410 Gone for a compacted
resourceVersion as an ERROR event or as the answer, Status objects for errors) and
serves a realistic node: pods across namespaces owned by a Deployment (through its
ReplicaSet, by name and by the ReplicaSet's own owner), a StatefulSet, a DaemonSet, a
Job of a CronJob, a bare pod, a pending pod, and one pod on another node. What these
tests prove is that ebpftop sends those requests and keeps a true map from them.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from k8s_contract import NODE, UID, ContractServer, Fault, cid, pod

from ebpftop.collectors.identity.kube_model import PodInfo
from ebpftop.collectors.identity.kube_pods import PodCache, node_name, pod_cache_from
from ebpftop.collectors.rollout.kube import KubeAccess
from ebpftop.core.settings import Settings


async def until(cond, what: str, bound: float = 10.0) -> None:
    end = time.monotonic() + bound
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"not within {bound}s: {what}")
        await asyncio.sleep(0.01)


async def no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def server():
    with ContractServer(token="node-token") as s:
        yield s


def cache(server, **kw) -> PodCache:
    access = KubeAccess(server=server.url, source="test kubeconfig", token="node-token")
    return PodCache(access, NODE, timeout=5.0, **kw)


async def test_the_nodes_pods_are_named_with_workload_containers_and_labels(server):
    pods = cache(server)
    await pods.start()
    try:
        assert pods.error is None and pods.lists == 1
        assert pods.lookup(UID["checkout"]) == PodInfo(
            name="checkout-7f9c6d5b8-x2x4z",
            namespace="shop",
            uid=UID["checkout"],
            node=NODE,
            workload_kind="Deployment",
            workload_name="checkout",
            labels=(("app.kubernetes.io/name", "checkout"),),
            containers=((cid(3), "istio-init"), (cid(1), "app"), (cid(2), "istio-proxy")),
        )
        redis = pods.lookup(UID["redis"])
        assert redis is not None and redis.workload() == "StatefulSet/redis"
        assert redis.container_name(cid(4)) == "redis" and redis.label("app") == "redis"  # cri-o://
        proxy = pods.lookup(UID["kube-proxy"])
        assert proxy is not None and proxy.workload() == "DaemonSet/kube-proxy"
        assert proxy.container_name(cid(5)) == "kube-proxy" and proxy.labels == ()  # docker://
        debug = pods.lookup(UID["debug"])
        assert debug is not None and debug.workload() is None and debug.namespace == "default"
        assert pods.lookup(UID["report"]).workload() == "CronJob/report"  # the Job's own owner
        assert pods.lookup(UID["legacy"]).workload() == "Deployment/web"  # the ReplicaSet's own owner
        pending = pods.lookup(UID["pending"])
        assert (
            pending is not None and pending.containers == () and pending.workload() == "Deployment/checkout"
        )
        assert pods.lookup(UID["elsewhere"]) is None  # on node-b
        assert pods.lookup("no-such-uid") is None
        listed = server.lists()
        assert len(listed) == 1 and listed[0].query["fieldSelector"] == [f"spec.nodeName={NODE}"]
        assert listed[0].headers["Authorization"] == "Bearer node-token"
        # the owners that do not follow <deployment>-<hash> were read, once each; the rest by name
        owners = [r.path for r in server.requests if r.path.startswith("/apis/")]
        assert sorted(owners) == [
            "/apis/apps/v1/namespaces/legacy/replicasets/web-blue",
            "/apis/batch/v1/namespaces/batch/jobs/report-29420100",
        ]
    finally:
        await pods.close()


async def test_a_long_list_is_read_in_pages(server):
    pods = cache(server, page=3)
    await pods.start()
    try:
        listed = server.lists()
        assert [r.query.get("continue") for r in listed] == [None, ["3"], ["6"]]
        assert all(r.query["limit"] == ["3"] for r in listed)
        assert len(pods.pods()) == 7 and pods.lookup(UID["legacy"]) is not None
    finally:
        await pods.close()


async def test_the_watch_adds_changes_and_removes_pods_and_follows_bookmarks(server):
    pods = cache(server)
    await pods.start()
    try:
        await until(server.watching.is_set, "the watch is open")
        watch = server.watches()[0].query
        assert watch["resourceVersion"] == ["1000"] and watch["allowWatchBookmarks"] == ["true"]
        assert watch["fieldSelector"] == [f"spec.nodeName={NODE}"]

        new_uid = "a11ce000-0000-4000-8000-0000000000aa"
        server.add_pod(
            pod(
                "shop",
                "cart-5d9f7-abcde",
                new_uid,
                owner=("ReplicaSet", "cart-5d9f7"),
                labels={"pod-template-hash": "5d9f7"},
            )
        )
        await until(lambda: pods.lookup(new_uid) is not None, "ADDED pod in the cache")
        assert pods.lookup(new_uid).workload() == "Deployment/cart" and pods.lookup(new_uid).containers == ()

        def started(p: dict) -> None:
            p["status"]["containerStatuses"] = [{"name": "cart", "containerID": f"containerd://{cid(42)}"}]

        server.modify_pod(new_uid, started)
        await until(lambda: pods.lookup(new_uid).container_name(cid(42)) == "cart", "MODIFIED pod")

        server.delete_pod(UID["debug"])
        await until(lambda: pods.lookup(UID["debug"]) is None, "DELETED pod gone")

        # a pod scheduled elsewhere never shows up; the next event proves the stream moved past it
        server.add_pod(pod("shop", "far", "fa000000-0000-4000-8000-0000000000fa", node="node-b"))
        version = server.bookmark()
        await until(lambda: pods.resource_version == version, "the bookmark's resourceVersion")
        assert pods.lookup("fa000000-0000-4000-8000-0000000000fa") is None

        before = len(server.requests)
        for _ in range(10_000):
            pods.lookup(UID["checkout"])
        assert len(server.requests) == before  # lookups read the cache only
        assert pods.lists == 1 and len(server.watches()) == 1
    finally:
        await pods.close()


async def test_a_watch_that_ends_resumes_from_the_last_version(server):
    pods = cache(server)
    await pods.start()
    try:
        await until(server.watching.is_set, "the watch is open")
        version = server.bookmark()
        await until(lambda: pods.resource_version == version, "bookmark seen")
        server.end_watch()
        await until(lambda: len(server.watches()) == 2, "a second watch")
        assert server.watches()[1].query["resourceVersion"] == [version]
        assert pods.lists == 1
    finally:
        await pods.close()


@pytest.mark.parametrize("gone_as", ["event", "status"])
async def test_410_gone_lists_again_and_picks_up_what_changed_meanwhile(server, gone_as):
    server.gone_as = gone_as
    pods = cache(server)
    await pods.start()
    try:
        await until(server.watching.is_set, "the watch is open")
        with server.lock:  # changes the open watch will never send: only a new list finds them
            server.pods.pop(UID["redis"])
            server.version += 5
        if gone_as == "event":
            server.compact()  # the open watch gets an ERROR event with a 410 Status
        else:
            server.oldest = server.version + 1  # the resumed watch is answered 410
            server.end_watch()
        await until(lambda: pods.lists == 2, "a second list after 410")
        assert pods.lookup(UID["redis"]) is None and pods.lookup(UID["checkout"]) is not None
        assert pods.error is None
        listed_at = str(server.version)
        await until(
            lambda: server.watches()[-1].query["resourceVersion"] == [listed_at], "a watch from the new list"
        )
    finally:
        await pods.close()


async def test_a_failing_api_keeps_the_cache_says_why_and_recovers(server):
    pods = cache(server, sleep=no_wait)
    await pods.start()
    try:
        await until(server.watching.is_set, "the watch is open")
        server.faults.append(
            Fault(
                "GET",
                "/api/v1/pods",
                500,
                times=3,
                body={"kind": "Status", "message": "etcdserver: leader changed"},
            )
        )
        server.end_watch()
        await until(lambda: pods.error is not None, "the failure is kept")
        assert "HTTP 500: etcdserver: leader changed" in pods.error
        assert pods.lookup(UID["checkout"]) is not None  # still served meanwhile
        await until(lambda: pods.error is None and server.watching.is_set(), "recovered")
        assert pods.lists == 1  # the version was still good: resumed, not relisted
    finally:
        await pods.close()


async def test_rejected_credentials_leave_an_empty_cache_and_a_clear_error(server):
    access = KubeAccess(server=server.url, source="kubeconfig /etc/k, context prod", token="stale")
    pods = PodCache(access, NODE, timeout=0.5, sleep=no_wait)
    await pods.start()  # never raises: the owner's source keeps working without pods
    try:
        assert pods.lookup(UID["checkout"]) is None and not pods.synced.is_set()
        assert "list pods" in pods.error and "HTTP 401" in pods.error and "expired token?" in pods.error
    finally:
        await pods.close()
        await pods.close()  # twice is fine


async def test_a_relist_bounds_drift(server):
    now = [0.0]
    pods = cache(server, relist_every=60.0, clock=lambda: now[0])
    await pods.start()
    try:
        await until(server.watching.is_set, "the watch is open")
        now[0] = 61.0
        server.bookmark()  # the next event finds the list too old
        await until(lambda: pods.lists == 2, "a periodic list")
    finally:
        await pods.close()


def test_settings_choose_the_kubeconfig_and_the_node(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pod_cache_from(Settings()) is None  # no API configured: no pod names, no calls
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        "current-context: c\nclusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    made = pod_cache_from(Settings(rollout_argo_kubeconfig=str(cfg), kube_node_name="worker-7"))
    assert made is not None and made.node == "worker-7" and made.access.server == "https://127.0.0.1:6443"
    monkeypatch.setenv("KUBECONFIG", str(cfg))
    made = pod_cache_from(Settings())
    assert made is not None and made.node == node_name(None) and made.node == made.node.lower()


async def test_an_owner_that_cannot_be_read_is_named_as_the_pods_own_owner(server):
    server.owners.clear()  # RBAC without get on replicasets/jobs, or the owner is gone: 404
    server.faults.append(Fault("GET", "/replicasets/web-blue", 403))
    pods = cache(server)
    await pods.start()
    try:
        assert pods.lookup(UID["legacy"]).workload() == "ReplicaSet/web-blue"
        assert pods.lookup(UID["report"]).workload() == "Job/report-29420100"
        assert pods.lookup(UID["checkout"]).workload() == "Deployment/checkout"  # by name, nothing read
        assert pods.error is None  # the pods are served; only the owner is less precise
    finally:
        await pods.close()


async def test_odd_objects_are_skipped_and_a_garbled_stream_is_resumed(server):
    odd = pod("shop", "odd", "0dd00000-0000-4000-8000-0000000000dd", labels={"app": "odd"})
    odd["metadata"]["ownerReferences"] = {"kind": "ReplicaSet"}  # a mapping where a list belongs
    odd["status"]["containerStatuses"] = "running"
    odd["status"]["initContainerStatuses"] = ["x", {"name": 7, "containerID": "containerd://abc"}]
    nameless = pod("shop", "x", "0dd00000-0000-4000-8000-0000000000de")
    del nameless["metadata"]["name"]
    server.pods[odd["metadata"]["uid"]] = odd
    server.pods[nameless["metadata"]["uid"]] = nameless
    pods = cache(server, sleep=no_wait)
    await pods.start()
    try:
        assert pods.error is None and pods.lookup(UID["checkout"]) is not None
        got = pods.lookup("0dd00000-0000-4000-8000-0000000000dd")
        assert (
            got is not None and got.containers == () and got.workload() is None and got.label("app") == "odd"
        )
        assert pods.lookup("0dd00000-0000-4000-8000-0000000000de") is None  # cannot be named: skipped
        await until(server.watching.is_set, "the watch is open")
        server.send_raw(b"{not json\n")
        await until(lambda: len(server.watches()) == 2, "the watch resumed after the garbled line")
        assert pods.lists == 1 and pods.lookup(UID["checkout"]) is not None
        server.delete_pod(UID["redis"])  # and the resumed watch works
        await until(lambda: pods.lookup(UID["redis"]) is None, "DELETED after the resume")
    finally:
        await pods.close()
