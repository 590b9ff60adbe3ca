"""The dashboard reaches a private Cloud Run API: with an audience set, every request carries a
Google ID token for it, fetched and renewed by google-auth.

google-auth gets the token the way it does for a service-account key: it signs a JWT asking for
an ID token and posts it to the key's token_uri. Here that token_uri is a local HTTP server
that checks the request and answers with a signed ID token; the same server plays the private
API, answering 403 to a request without a bearer token for its audience (as Cloud Run does).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from dash_app.api_client import ApiClient, ApiError, ApiUnavailable

AUDIENCE = "https://alphastream-api-abc123-ew.a.run.app"
TOKEN_LIFETIME_SECONDS = 3600


class _FakeGoogleAndApi(BaseHTTPRequestHandler):
    """POST /token: Google's token endpoint for a service-account key. GET /healthz: the API."""

    signer: crypt.RSASigner
    tokens_issued: list[str]
    bearer_seen: list[str]

    def do_POST(self):  # noqa: N802 (http.server's naming)
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        claims = jwt.decode(form["assertion"][0], verify=False)
        now = int(time.time())
        token = jwt.encode(self.signer, {"aud": claims["target_audience"], "iat": now,
                                         "exp": now + TOKEN_LIFETIME_SECONDS, "sub": "dashboard"}).decode()
        self.tokens_issued.append(token)
        self._answer(200, {"id_token": token})

    def do_GET(self):  # noqa: N802
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or jwt.decode(token, verify=False).get("aud") != AUDIENCE:
            self._answer(403, {"detail": "Forbidden: no ID token for this service"})
            return
        self.bearer_seen.append(token)
        self._answer(200, {"status": "ok"})

    def _answer(self, status: int, body: dict):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    handler = type("Handler", (_FakeGoogleAndApi,), {"signer": crypt.RSASigner.from_string(pem, "k1"),
                                                      "tokens_issued": [], "bearer_seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    key_file = tmp_path / "dashboard-sa.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1", "private_key": pem,
        "client_email": "alphastream-dashboard@test-project.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{base}/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield base, handler
    httpd.shutdown()
    httpd.server_close()


def test_requests_carry_an_id_token_for_the_private_api(server):
    base, handler = server
    client = ApiClient(base, api_key="k", id_token_audience=AUDIENCE)
    assert client.health() == {"status": "ok"}
    assert client.health() == {"status": "ok"}
    assert len(handler.tokens_issued) == 1, "the token is reused until it expires, not fetched per request"
    assert handler.bearer_seen == handler.tokens_issued * 2


def test_without_an_audience_the_private_api_refuses(server):
    base, _ = server
    with pytest.raises(ApiError, match="HTTP 403"):
        ApiClient(base).health()


def test_no_credentials_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ApiUnavailable, match="cannot get an ID token"):
        ApiClient("http://127.0.0.1:9", id_token_audience=AUDIENCE).health()
