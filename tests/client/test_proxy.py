"""Proxies, through a real proxy process on loopback (`tests/proxy_server.py`): plain http is
forwarded, https goes through a CONNECT tunnel to a TLS server whose certificate comes from a
throwaway CA (made with the ``openssl`` command), ``NO_PROXY`` bypasses, ``proxy=`` overrides
the environment, and a proxy that refuses or is down is a `ProxyError` that shows no secret.

The servers answer for ``crisp.test``, a name only the proxy "resolves" (to 127.0.0.1): a call
to it that succeeds went through the proxy."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crisp_api import Crisp, NetworkError, ProxyError
from tests.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent.parent
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD")
SECRET = "pr0xy-s3cret"


class RunningProxy:
    """A `tests/proxy_server.py` process and the log of what it relayed."""

    def __init__(self, workdir: Path, *options: str) -> None:
        self.log = workdir / f"proxy-{id(self)}.jsonl"
        self.log.touch()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "proxy_server.py"), "--log", str(self.log),
             *options],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def relayed(self) -> list[dict[str, str | None]]:
        """Every request the proxy relayed so far."""
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture(autouse=True)
def _no_proxy_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[Callable[..., RunningProxy]]:
    started: list[RunningProxy] = []

    def start(*options: str) -> RunningProxy:
        started.append(RunningProxy(tmp_path, *options))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a server certificate it signed, for crisp.test and 127.0.0.1."""
    where = tmp_path_factory.mktemp("tls")
    files = {name: where / f"{name}.pem" for name in ("ca", "ca_key", "key", "csr", "cert")}
    extensions = where / "extensions.cnf"
    extensions.write_text("subjectAltName=DNS:crisp.test,IP:127.0.0.1\n"
                          "authorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for command in (
        ["req", "-x509", *ec, "-keyout", files["ca_key"], "-out", files["ca"], "-days", "2",
         "-subj", "/CN=crisp-api test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", files["key"], "-out", files["csr"], "-subj", "/CN=crisp.test"],
        ["x509", "-req", "-in", files["csr"], "-CA", files["ca"], "-CAkey", files["ca_key"],
         "-CAcreateserial", "-out", files["cert"], "-days", "2", "-extfile", extensions],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return files


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def tls_server(certificates: dict[str, Path]) -> Iterator[ScriptedServer]:
    """A `ScriptedServer` speaking TLS with the throwaway CA's certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    running = ScriptedServer()
    running._server.socket = context.wrap_socket(running._server.socket, server_side=True)
    with running:
        yield running


def _port(server: ScriptedServer) -> int:
    return int(server.url.rpartition(":")[2])


def _client(rest_host: str, **options: object) -> Crisp:
    return Crisp(identifier="ident", key="the-key", rest_host=rest_host, max_retries=0,
                 cache_ttl=0, **options)  # type: ignore[arg-type]


def test_http_goes_through_the_proxy_the_environment_names_with_its_credentials(
    start_proxy: Callable[..., RunningProxy], server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = start_proxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://agent:{SECRET}%21@127.0.0.1:{proxy.port}")
    caplog.set_level(logging.DEBUG)
    client = _client(f"http://crisp.test:{_port(server)}")
    assert client.get("/website/w") == {"path": "/v1/website/w"}
    (relayed,) = proxy.relayed()
    assert relayed["method"] == "GET"
    assert relayed["target"] == f"http://crisp.test:{_port(server)}/v1/website/w"
    login = base64.b64encode(f"agent:{SECRET}!".encode()).decode()
    assert relayed["proxy_authorization"] == f"Basic {login}"
    assert server.seen[0].headers["Host"] == f"crisp.test:{_port(server)}"
    assert "proxy-authorization" not in {name.lower() for name in server.seen[0].headers}
    shown = repr(client) + repr(client._transport.proxies) + caplog.text
    assert SECRET not in shown
    assert login not in shown


def test_https_goes_through_a_connect_tunnel_and_the_certificate_is_still_checked(
    start_proxy: Callable[..., RunningProxy], tls_server: ScriptedServer,
    certificates: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy()
    monkeypatch.setenv("https_proxy", proxy.url)
    host = f"crisp.test:{_port(tls_server)}"
    client = _client(f"https://{host}", ca_bundle=certificates["ca"])
    assert client.get("/website/w") == {"path": "/v1/website/w"}
    assert client.get("/website/x") == {"path": "/v1/website/x"}
    assert [(entry["method"], entry["target"]) for entry in proxy.relayed()] == [
        ("CONNECT", host)]
    assert tls_server.seen[0].headers["Host"] == host
    untrusted = _client(f"https://{host}")
    with pytest.raises(NetworkError, match="SSLError"):
        untrusted.get("/website/w")
    assert len(tls_server.seen) == 2


def test_no_proxy_bypasses_the_proxy(
    start_proxy: Callable[..., RunningProxy], server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", "example.org, 127.0.0.1")
    assert _client(server.url).get("/website/w") == {"path": "/v1/website/w"}
    assert proxy.relayed() == []
    assert len(server.seen) == 1


def test_the_proxy_option_overrides_the_environment(
    start_proxy: Callable[..., RunningProxy], server: ScriptedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = start_proxy()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("NO_PROXY", "crisp.test")
    client = _client(f"http://crisp.test:{_port(server)}", proxy=proxy.url)
    assert client.get("/website/w") == {"path": "/v1/website/w"}
    assert len(proxy.relayed()) == 1
    assert _client(server.url, proxy=False).get("/website/w") == {"path": "/v1/website/w"}
    assert len(proxy.relayed()) == 1
    with pytest.raises(ProxyError):
        _client(server.url).get("/website/w")


def test_a_refusing_or_absent_proxy_is_a_proxy_error_that_shows_no_secret(
    start_proxy: Callable[..., RunningProxy], tls_server: ScriptedServer,
    certificates: dict[str, Path],
) -> None:
    refusing = start_proxy("--refuse")
    host = f"https://crisp.test:{_port(tls_server)}"
    with pytest.raises(ProxyError) as refused:
        _client(host, proxy=f"http://agent:{SECRET}@127.0.0.1:{refusing.port}",
                ca_bundle=certificates["ca"]).get("/website/w")
    assert f"proxy http://127.0.0.1:{refusing.port} unreachable or refused" in str(refused.value)
    assert "403" in str(refused.value)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ProxyError) as absent:
        _client(host, proxy=f"agent:{SECRET}@127.0.0.1:{port}").get("/website/w")
    assert f"proxy http://127.0.0.1:{port} unreachable" in str(absent.value)
    for error in (refused.value, absent.value):
        assert SECRET not in str(error) + repr(error.args)
    assert tls_server.seen == []


@pytest.mark.parametrize(("where", "value", "kind", "words"), [
    ("option", f"socks5://agent:{SECRET}@127.0.0.1:1080", ValueError,
     "proxy must be an http:// or https:// proxy URL with a host (SOCKS is not supported), "
     "got 'socks5://***@127.0.0.1:1080'"),
    ("HTTPS_PROXY", f"socks5h://agent:{SECRET}@127.0.0.1:1080", ValueError,
     "HTTPS_PROXY must be an http:// or https:// proxy URL"),
    ("option", True, TypeError, "proxy must be a proxy URL string, False (no proxy) or None"),
    ("option", " ", ValueError, "proxy must not be empty"),
])
def test_a_bad_proxy_is_refused_naming_where_it_came_from_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, where: str, value: object, kind: type[Exception],
    words: str,
) -> None:
    if where != "option":
        monkeypatch.setenv(where, str(value))
    with pytest.raises(kind) as refused:
        Crisp(**({"proxy": value} if where == "option" else {}))  # type: ignore[arg-type]
    assert words in str(refused.value)
    assert SECRET not in str(refused.value)


def test_ca_bundle_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ca_bundle must be the path of a PEM file"):
        Crisp(ca_bundle=tmp_path / "missing.pem")
    with pytest.raises(TypeError, match="ca_bundle must be the path of a PEM file"):
        Crisp(ca_bundle=3)  # type: ignore[arg-type]
