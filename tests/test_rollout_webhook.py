"""The webhook controller against a local HTTP receiver that checks the HMAC signature
the way a receiver must (over the exact body bytes); and the rollout source on top of it."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ebpftop.collectors.registry import default_collectors
from ebpftop.collectors.rollout.base import ControllerError
from ebpftop.collectors.rollout.collector import RolloutCollector, controller_from
from ebpftop.collectors.rollout.model import RolloutData
from ebpftop.collectors.rollout.webhook import SIGNATURE_HEADER, WebhookController
from ebpftop.core.bus import Bus
from ebpftop.core.collector import CollectorRunner
from ebpftop.core.model import HealthState, from_json, to_json
from ebpftop.core.settings import Settings

KEY = b"s3cret-key"
STATE = {
    "stable_revision": "v1.0.0",
    "canary_revision": "v1.1.0",
    "stable_weight": 90,
    "canary_weight": 10,
    "phase": "Progressing",
    "step": 2,
    "steps": 5,
    "last_change": 1763777400.0,
    "promote": True,
}


class Receiver:
    def __init__(self) -> None:
        self.state: object = STATE
        self.get_status = 200
        self.post_status = 200
        self.stall = 0.0
        self.posts: list[tuple[bytes, str, bool]] = []  # body, signature, valid
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if receiver.stall:
                    receiver._release.wait(receiver.stall)
                state = receiver.state
                self._send(
                    receiver.get_status, state if isinstance(state, bytes) else json.dumps(state).encode()
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sig = self.headers.get(SIGNATURE_HEADER, "")
                good = "sha256=" + hmac.new(KEY, body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(sig, good)
                receiver.posts.append((body, sig, valid))
                if not valid:
                    self._send(401, b'{"message": "bad signature"}')
                    return
                self._send(receiver.post_status, b'{"message": "rollback queued"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/rollout/checkout"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "webhook.key"
    path.write_bytes(KEY + b"\n")
    path.chmod(0o600)
    return str(path)


async def test_state_from_get(receiver, secret):
    c = WebhookController("checkout", receiver.url, secret_file=secret)
    st = await c.state()
    assert (st.stable_revision, st.canary_revision, st.stable_weight, st.canary_weight) == (
        "v1.0.0",
        "v1.1.0",
        90.0,
        10.0,
    )
    assert (st.phase, st.step, st.steps, st.last_change) == ("Progressing", 2, 5, 1763777400.0)
    assert st.can_rollback and st.can_promote
    await c.close()


async def test_rollback_posts_a_signed_body_exactly_as_planned(receiver, secret):
    c = WebhookController("checkout", receiver.url, secret_file=secret)
    plan = c.plan_rollback()
    message = await c.rollback(plan)
    assert message == "rollback accepted by the webhook (HTTP 200): rollback queued"
    ((body, sig, valid),) = receiver.posts
    assert valid and body.decode() == plan.requests[0].body
    doc = json.loads(body)
    assert (doc["action"], doc["service"]) == ("rollback", "checkout") and len(doc["nonce"]) == 16
    # The dry run shows how the signature is made, never a signature that could be replayed.
    assert sig not in plan.describe() and "HMAC-SHA256 of this body" in plan.describe()
    await c.close()


async def test_non_2xx_is_reported_with_the_answer(receiver, secret):
    receiver.post_status = 503
    c = WebhookController("checkout", receiver.url, secret_file=secret)
    with pytest.raises(ControllerError, match=r"answered HTTP 503: .*rollback queued"):
        await c.rollback(c.plan_rollback())
    receiver.get_status = 500
    with pytest.raises(ControllerError, match=r"GET .* answered HTTP 500"):
        await c.state()


async def test_wrong_key_is_refused_by_the_receiver(receiver, tmp_path):
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"other")
    c = WebhookController("checkout", receiver.url, secret_file=str(wrong))
    with pytest.raises(ControllerError, match=r"HTTP 401: .*bad signature"):
        await c.rollback(c.plan_rollback())
    assert receiver.posts[0][2] is False


async def test_timeout_and_bad_answers_are_reported(receiver, secret):
    receiver.state = b"<html>oops</html>"
    c = WebhookController("checkout", receiver.url, secret_file=secret, timeout=0.3)
    with pytest.raises(ControllerError, match="not JSON: <html>oops"):
        await c.state()
    receiver.state = [1, 2]
    with pytest.raises(ControllerError, match="expected a JSON object, got list"):
        await c.state()
    receiver.stall = 5
    with pytest.raises(ControllerError, match=r"no answer within 0\.3s"):
        await c.state()


async def test_without_a_secret_rollback_is_disabled_and_never_sent_unsigned(receiver):
    c = WebhookController("checkout", receiver.url, secret_file=None)
    st = await c.state()
    assert not st.can_rollback and "webhook_secret_file" in st.rollback_reason
    with pytest.raises(ControllerError, match="refusing to send unsigned"):
        await c.rollback(c.plan_rollback())
    assert receiver.posts == []


# --------------------------------------------------------------------------- source


async def test_rollout_source_publishes_the_state_and_it_survives_json(receiver, secret):
    settings = Settings(
        rollout_controller="webhook",
        rollout_service="checkout",
        rollout_webhook_url=receiver.url,
        rollout_webhook_secret_file=secret,
    )
    bus, seen = Bus(), []
    bus.subscribe(seen.append)
    runner = CollectorRunner(RolloutCollector(settings), bus)
    await runner.collector.start()
    assert await runner.run_once()
    snap = seen[-1]
    assert snap.source == "rollout" and snap.health.state is HealthState.OK
    assert isinstance(snap.data, RolloutData) and snap.data.services[0].canary_weight == 10.0
    back = from_json(to_json(snap))
    assert back.data == snap.data
    receiver.get_status = 502
    assert not await runner.run_once()
    assert seen[-1].health.state is HealthState.DEGRADED and "HTTP 502" in seen[-1].health.message
    await runner.collector.close()


async def test_rollout_source_is_off_without_a_controller_and_listed_only_when_configured():
    collector = RolloutCollector(Settings())
    from ebpftop.core.collector import SourceUnavailable

    with pytest.raises(SourceUnavailable) as info:
        await collector.start()
    assert info.value.off
    assert "rollout" not in [c.name for c in default_collectors(Settings())]
    configured = Settings(rollout_controller="haproxy", rollout_haproxy_socket="/nonexistent.sock")
    assert "rollout" in [c.name for c in default_collectors(configured)]


def test_controller_settings_problems_are_named():
    with pytest.raises(ControllerError, match="haproxy_socket is not set"):
        controller_from(Settings(rollout_controller="haproxy"))
    with pytest.raises(ControllerError, match="webhook_url is not set"):
        controller_from(Settings(rollout_controller="webhook"))
    assert controller_from(Settings()) is None
