"""Hostile and broken input: ids, queries and bodies that try to escape their route, answers
that are cut short, TLS that does not verify, and secrets that must never show."""

from __future__ import annotations

import base64
import inspect
import json
import logging
import shutil
import ssl
import subprocess
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crisp_api import Crisp, NetworkError, RouteError
from tests.conftest import IDENTIFIER, KEY
from tests.scripted_server import Reply, ScriptedServer

ids = st.text(min_size=0, max_size=40)
query_values = st.one_of(st.text(max_size=30), st.integers(), st.booleans(), st.none())
SECRET_CONTENT = "the customer's card is " + "4242" * 4
EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def shared_server():
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def shared_client(shared_server: ScriptedServer):
    with Crisp(cache_ttl=0, max_retries=0) as client:
        client.set_rest_host(shared_server.url)
        client.authenticate(IDENTIFIER, KEY)
        yield client


def _last_path(server: ScriptedServer) -> str:
    return server.seen[-1].path


@EXAMPLES
@given(website_id=ids, session_id=ids)
def test_path_parameters_never_reach_another_route(
    shared_server: ScriptedServer, shared_client: Crisp, website_id: str, session_id: str
) -> None:
    before = len(shared_server.seen)
    try:
        shared_client.website.get_conversation_state(website_id, session_id)
    except ValueError:
        assert len(shared_server.seen) == before  # refused before anything was sent
        assert {website_id, session_id} & {"", ".", ".."} or not all(
            _encodable(v) for v in (website_id, session_id)
        )
        return
    path = urlsplit(_last_path(shared_server)).path
    segments = path.split("/")
    assert segments[:3] == ["", "v1", "website"]
    assert segments[4] == "conversation"
    assert segments[6:] == ["state"]
    assert [unquote(segments[3]), unquote(segments[5])] == [website_id, session_id]


@EXAMPLES
@given(options=st.dictionaries(st.text(min_size=1, max_size=12), query_values, max_size=5))
def test_query_values_stay_query_values(
    shared_server: ScriptedServer, shared_client: Crisp, options: dict[str, object]
) -> None:
    try:
        shared_client.website.list_conversations("w", 1, options)  # type: ignore[arg-type]
    except ValueError:
        assert not all(_encodable(str(k)) and _encodable(str(v)) for k, v in options.items())
        return
    parts = urlsplit(_last_path(shared_server))
    assert parts.path == "/v1/website/w/conversations/1"
    sent = dict(parse_qsl(parts.query, keep_blank_values=True))
    expected = {
        k: ("1" if v else "0") if isinstance(v, bool) else str(v)
        for k, v in options.items()
        if v is not None
    }
    assert sent == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@EXAMPLES
@given(body=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_bodies_arrive_intact_or_are_refused(
    shared_server: ScriptedServer, shared_client: Crisp, body: dict[str, object]
) -> None:
    try:
        shared_client.website.update_conversation_metas("w", "s", body)
    except TypeError:
        assert not _encodable(json.dumps(body, ensure_ascii=False))
        return
    seen = shared_server.seen[-1]
    assert seen.path == "/v1/website/w/conversation/s/meta"
    assert json.loads(seen.body) == body


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def test_a_body_cut_short_names_its_status(server: ScriptedServer, client: Crisp) -> None:
    server.push(
        Reply(
            200, body=b'{"error":false,"data":{"a":', headers={"Content-Length": "80"}, close=True
        )
    )
    with pytest.raises(NetworkError) as raised:
        client.website.send_message_in_conversation("w", "s", {"content": "x"})
    assert raised.value.status == 200
    assert server.count() == 1


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_certificates_are_always_verified(self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with Crisp(max_retries=3) as client:
            client.set_rest_host(f"https://127.0.0.1:{httpd.server_address[1]}")
            client.authenticate(IDENTIFIER, KEY)
            with pytest.raises(NetworkError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                client.website.get_website("w")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert hits == []  # nothing, credentials included, went to the unverified server


def test_there_is_no_switch_to_turn_verification_off() -> None:
    for name in inspect.signature(Crisp).parameters:
        assert "verify" not in name
        assert "ssl" not in name
        assert "cert" not in name


def test_secrets_stay_out_of_tracebacks_and_debug_logs(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = base64.b64encode(f"{IDENTIFIER}:{KEY}".encode()).decode()
    failures = [
        Reply(401, body=b'{"error":true,"reason":"unauthorized","data":{}}'),
        Reply(502, body=b"<html>bad gateway</html>", content_type="text/html"),
        Reply(200, body=b"not json"),
        Reply(200, body=b'{"error":false', headers={"Content-Length": "50"}, close=True),
    ]
    texts: list[str] = []
    message = {"content": SECRET_CONTENT}
    with Crisp(max_retries=0) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        for failure in failures:
            server.push(failure)
            with pytest.raises(RouteError) as raised:
                client.website.send_message_in_conversation("w", "s", message)
            texts.append("".join(traceback.format_exception(raised.value)))
            texts.append(repr(raised.value))
        client.set_rest_host("http://127.0.0.1:9")
        with pytest.raises(NetworkError) as refused:
            client.website.get_website("w")
        texts.append("".join(traceback.format_exception(refused.value)))
        texts.append(repr(client))
    texts.append(caplog.text)
    for text in texts:
        for secret in (KEY, IDENTIFIER, token, SECRET_CONTENT):
            assert secret not in text
