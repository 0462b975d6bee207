"""Follow mode's ports hold: slow, idle, many and malformed clients over real sockets against
`crisp_api.sync.monitoring.serve` (bounded threads, read timeout, connection cap, 400s)."""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from crisp_api import Crisp
from crisp_api.sync.follow import Health
from crisp_api.sync.http_server import HttpServer, Limits
from crisp_api.sync.monitoring import Metrics, serve
from crisp_api.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.sync.helpers import wait_for

SECRET = "ports-secret"
WORKERS = 4
SPARE_THREADS = 3
"""Threads beyond the workers a server may add: its loop, and slack for the test runner."""
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40 + b"\r\n\r\n"


@contextmanager
def running(limits: Limits, **options: Any) -> Iterator[HttpServer]:
    server = serve("127.0.0.1", 0, health=Health(), threshold=60.0,
                   limits=limits, **options)
    try:
        yield server
    finally:
        server.shutdown()


def connect(server: HttpServer) -> socket.socket:
    return socket.create_connection(server.server_address, timeout=5)


def readable(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Those of ``sockets`` with something to read (or closed) within ``timeout`` seconds;
    epoll, not select(), since a full test run holds descriptors past select()'s 1024."""
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        return [key.fileobj for key, _ in selector.select(timeout)]  # type: ignore[misc]


@contextmanager
def clients_of(server: HttpServer, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``server``, all closed at the end, whatever happens."""
    clients: list[socket.socket] = []
    try:
        clients += [connect(server) for _ in range(count)]
        yield clients
    finally:
        for client in clients:
            client.close()


def exchange(server: HttpServer, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection and read until the server closes it."""
    with connect(server) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def signed(body: bytes, headers: str = "") -> bytes:
    stamp = int(time.time() * 1000)
    return (
        f"POST /hooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"{SIGNATURE_HEADER}: {sign(SECRET, body, stamp)}\r\n{TIMESTAMP_HEADER}: {stamp}\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def test_slowloris_clients_cost_no_thread_and_are_cut_after_the_read_timeout() -> None:
    """120 clients trickling their heads: threads stay bounded, each is cut by the deadline
    for the whole head, not per byte (the old server: a thread each, never cut)."""
    baseline = threading.active_count()
    limits = Limits(workers=WORKERS, read_timeout=1.0, idle_timeout=5.0, max_connections=200)
    with running(limits) as server, clients_of(server, 120) as clients:
        started = time.monotonic()
        cut: dict[socket.socket, float] = {}
        peak = 0
        sent = 0
        while len(cut) < len(clients) and time.monotonic() - started < 4.0:
            for client in clients:
                if client not in cut:
                    try:
                        client.send(HEAD[sent:sent + 1])
                    except OSError:
                        cut[client] = time.monotonic() - started
            sent += 1
            for client in readable([c for c in clients if c not in cut], 0.1):
                cut[client] = time.monotonic() - started
            peak = max(peak, threading.active_count())
    assert sent < len(HEAD)  # the heads were never complete
    assert peak <= baseline + WORKERS + SPARE_THREADS
    assert len(cut) == len(clients)
    assert min(cut.values()) >= 0.8  # the deadline is for the whole head, not per byte
    assert max(cut.values()) <= 3.5
    assert server.counts.timed_out == 120


def test_idle_connections_are_capped_answered_503_and_closed_when_idle() -> None:
    """500 idle connections: no thread each; beyond the cap a fast 503 with Retry-After; the
    admitted ones closed after the idle timeout, and the port serves again."""
    baseline = threading.active_count()
    limits = Limits(workers=WORKERS, max_connections=50, idle_timeout=3.0)
    with running(limits) as server, clients_of(server, 500) as clients:
        time.sleep(0.5)
        threads = threading.active_count()
        answers: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 4.5
        while len(answers) < len(clients) and time.monotonic() < deadline:
            pending = [c for c in clients if c not in answers]
            for client in readable(pending, 0.2):
                try:
                    answers[client] = client.recv(1024)
                except OSError:
                    answers[client] = b"reset"
        busy = [a for a in answers.values() if status_of(a) == 503]
        closed = [a for a in answers.values() if a == b""]
        for client in clients:
            client.close()
        assert status_of(exchange(server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
                         ) == 200
    assert threads <= baseline + WORKERS + SPARE_THREADS
    assert len(busy) >= 400  # beyond the 50 (more are admitted once the first idle out)
    assert all(b"Retry-After: 1\r\n" in answer for answer in busy)
    assert len(busy) + len(closed) == 500  # the admitted ones, idle: closed without a word
    assert server.counts.refused == len(busy)


def test_300_concurrent_metrics_clients_all_get_an_answer_without_tracebacks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """300 clients x 10 requests, a connection each: every request is answered 200 or a clean
    503 from the cap, within a few seconds, and nothing is written on stderr (the old server:
    failed requests, a p99 of 12 s, BrokenPipe tracebacks)."""
    health = Health()
    with Crisp() as client:
        metrics = Metrics(client, health, 60.0)
        server = serve("127.0.0.1", 0, health=health, threshold=60.0, metrics=metrics)
        try:
            outcomes, slowest = asyncio.run(_many_clients(server.server_address, 300, 10))
        finally:
            server.shutdown()
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert sum(outcomes.values()) == 3000
    assert outcomes["200"] >= 300
    assert slowest < 10.0
    assert "Traceback" not in capfd.readouterr().err


async def _many_clients(address: tuple[str, int], clients: int,
                        each: int) -> tuple[dict[str, int], float]:
    outcomes: dict[str, int] = {}
    slowest = 0.0

    async def one() -> None:
        nonlocal slowest
        started = time.monotonic()
        try:
            async with asyncio.timeout(15):
                reader, writer = await asyncio.open_connection(*address)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = await reader.read()
                writer.close()
            outcome = str(status_of(answer))
        except (OSError, TimeoutError) as exc:
            outcome = type(exc).__name__
        slowest = max(slowest, time.monotonic() - started)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def client() -> None:
        for _ in range(each):
            await one()

    await asyncio.gather(*(client() for _ in range(clients)))
    return outcomes, slowest


@pytest.mark.parametrize(
    "body",
    [
        b'{"event": "message:send", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"event": "message:send", "data": {"fingerprint": %d}}' % 2**63,
        b'{"event": "message:send", "data": {"fingerprint": -%d}}' % 2**64,
        b'{"event": "message:send", "data": {"content": "\xff\xfe"}}',
        b'{"event": "message:send", "data": NaN}',
        b'{"event": "message:send", "data": 1e400}',
        b"not json at all",
    ],
    ids=["deep", "2**63", "-2**64", "utf8", "nan", "inf", "not-json"],
)
def test_signed_hooks_that_are_not_well_formed_get_400_and_never_reach_the_handler(
    body: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    applied: list[tuple[str, Any]] = []
    with running(Limits(workers=WORKERS), hooks=(SECRET, lambda *e: applied.append(e))) as srv:
        answer = exchange(srv, signed(body))
    assert status_of(answer) == 400
    assert applied == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_replayed_hook_is_refused_409_and_applied_once() -> None:
    applied: list[tuple[str, Any]] = []
    body = json.dumps({"event": "message:send", "data": {"content": "hi"}}).encode()
    request = signed(body)
    with structlog.testing.capture_logs() as logs, \
            running(Limits(workers=WORKERS), hooks=(SECRET, lambda *e: applied.append(e))) as srv:
        first = exchange(srv, request)
        again = exchange(srv, request)
        other = exchange(srv, signed(body.replace(b"hi", b"ho")))
    assert [status_of(first), status_of(again), status_of(other)] == [200, 409, 200]
    assert b"replayed" in again
    assert [log["status"] for log in logs if log["event"] == "hook.refused"] == [409]
    assert applied == [("message:send", {"content": "hi"}), ("message:send", {"content": "ho"})]


def test_a_hook_as_large_as_allowed_is_read_whole() -> None:
    applied: list[tuple[str, Any]] = []
    body = json.dumps({"event": "message:send", "data": {"content": "x" * 1_000_000}}).encode()
    with running(Limits(workers=WORKERS), hooks=(SECRET, lambda *e: applied.append(e))) as srv:
        answer = exchange(srv, signed(body))
    assert status_of(answer) == 200
    assert len(applied[0][1]["content"]) == 1_000_000


def test_a_client_expecting_100_continue_is_told_to_go_on() -> None:
    body = b'{"event": "message:send", "data": {}}'
    with running(Limits(workers=WORKERS), hooks=(SECRET, lambda *e: None)) as srv, \
            connect(srv) as sock:
        head, _, _ = signed(body, headers="Expect: 100-continue\r\n").partition(body)
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert status_of(sock.recv(1000)) == 200


def test_a_handler_that_raises_gives_a_bare_500_logged_once() -> None:
    def broken(event: str, data: Any) -> None:
        raise RuntimeError("secret detail")

    body = b'{"event": "message:send", "data": {}}'
    with structlog.testing.capture_logs() as logs, \
            running(Limits(workers=WORKERS), hooks=(SECRET, broken)) as server:
        answer = exchange(server, signed(body))
        healthy = exchange(server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 500
    assert b"secret detail" not in answer
    assert b"Traceback" not in answer
    assert [log["event"] for log in logs if log["log_level"] == "error"] == [
        "http.handler_failed"
    ]
    assert status_of(healthy) == 200
    assert server.counts.failed == 1


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /hooks HTTP/1.1\r\nHost: x\r\n\r\n", 411),
        (b"POST /hooks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"POST /hooks HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (2 * 1024 * 1024), 413),
        (b"POST /hooks HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"PUT /hooks HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
        (b"DELETE / HTTP/1.1\r\nConnection: close\r\n\r\n", 405),
        (b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n", 404),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
    ids=["no-length", "chunked", "too-large", "bad-length", "put", "delete", "404",
         "http2", "garbage", "bad-header", "big-head"],
)
def test_requests_the_server_refuses_get_a_clean_answer(raw: bytes, status: int) -> None:
    with running(Limits(workers=WORKERS), hooks=(SECRET, lambda *e: None)) as server:
        answer = exchange(server, raw)
    assert status_of(answer) == status
    if status == 405:
        assert b"Allow: GET, POST\r\n" in answer


def test_a_port_in_use_is_an_oserror_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError, match="in use"):
        serve("127.0.0.1", taken.getsockname()[1], health=Health(), threshold=60.0)


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    with running(Limits(workers=WORKERS)) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        answer = b""
        while answer.count(b"HTTP/1.1 200") < 2:
            answer += sock.recv(65536)
        assert b"Connection: close" not in answer


def test_a_client_that_goes_away_is_counted_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with running(Limits(workers=WORKERS)) as server:
        sock = connect(server)
        sock.sendall(HEAD[:10])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, mid-head
        wait_for(lambda: server.counts.gone == 1, 5, "the reset to be counted")
    assert "Traceback" not in capfd.readouterr().err
