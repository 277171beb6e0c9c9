"""Reaching Prometheus: bearer token, basic auth, a private CA, credentials kept out of
what is shown."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ebpftop.collectors.canary.collector import CanaryCollector, public_url
from ebpftop.collectors.canary.config import ServiceConfig
from ebpftop.collectors.canary.query import QueryError
from ebpftop.core.collector import SourceUnavailable
from ebpftop.core.settings import Settings


class Recorder:
    """Answers every query with one sample and records the Authorization header."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.auth.append(self.headers.get("Authorization"))
                if "query_exemplars" in self.path:
                    obj = {"status": "success", "data": []}
                elif "format_query" in self.path:
                    obj = {"status": "success", "data": "x"}
                else:
                    obj = {
                        "status": "success",
                        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]}]},
                    }
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.close()


def make(url: str, **settings) -> CanaryCollector:
    return CanaryCollector(
        Settings(prometheus_url=url, **settings),
        services=[ServiceConfig(variant_label="version")],
        clock=lambda: 100.0,
    )


async def collect(c: CanaryCollector):
    await c.start()
    try:
        return await c.collect()
    finally:
        await c.close()


async def test_bearer_token_from_file(recorder, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("s3cr3t-token\n")
    await collect(make(recorder.url, prometheus_token_file=str(tok)))
    assert recorder.auth and set(recorder.auth) == {"Bearer s3cr3t-token"}


async def test_basic_auth_with_password_file(recorder, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("hunter2")
    await collect(make(recorder.url, prometheus_user="oncall", prometheus_password_file=str(pw)))
    expected = "Basic " + base64.b64encode(b"oncall:hunter2").decode()
    assert recorder.auth and set(recorder.auth) == {expected}


async def test_basic_auth_user_without_password_file_is_refused_at_start(recorder):
    c = make(recorder.url, prometheus_user="oncall")
    with pytest.raises(SourceUnavailable) as exc:
        await c.start()
    assert "basic_auth_password_file" in exc.value.message
    assert recorder.auth == []  # nothing was sent


async def test_empty_token_file_is_refused(recorder, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("  \n")
    with pytest.raises(SourceUnavailable, match="is empty"):
        await make(recorder.url, prometheus_token_file=str(tok)).start()


def test_credentials_in_the_url_are_not_shown():
    assert public_url("https://u:p@prom.example:9443/prefix") == "https://prom.example:9443/prefix"
    assert public_url("http://127.0.0.1:9090") == "http://127.0.0.1:9090"


@pytest.fixture
def tls_server(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ebpftop test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = tmp_path / "ca.pem"
    key_pem = tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_pem, key_pem)
    r = Recorder(tls=ctx)
    yield r, str(cert_pem)
    r.close()


async def test_private_ca_file_is_trusted(tls_server):
    server, ca = tls_server
    data = await collect(make(server.url, prometheus_ca_file=ca))
    assert data.services[0].canary.p99_s == 0.5


async def test_unknown_ca_is_a_tls_error_not_data(tls_server):
    server, _ = tls_server
    with pytest.raises(QueryError) as exc:
        await collect(make(server.url))
    assert exc.value.kind == "connection"
    assert "TLS failed: certificate verify failed" in exc.value.message
