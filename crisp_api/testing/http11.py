"""A small, fast HTTP/1.1 server on ``asyncio.Protocol``, built for the fake's needs.

It frames requests by ``Content-Length`` only (no chunked requests), keeps connections alive,
answers one request at a time per connection, and carries out the faults a handler decides:
closing before answering, never answering, answering late or trickling the body.

Requests without latency are parsed, handled and answered synchronously inside
``data_received``, which keeps the server fast enough for benchmarks to measure the client.
A delayed request is still applied if its client gives up meanwhile, as a real server would.

Every answer carries a ``Date`` header (RFC 9110 IMF-fixdate) read from the handler's clock,
which is the fake server's and need not agree with its clients'.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

from crisp_api.testing.faults import Decision, Outcome

JSON_TYPE = "application/json; charset=utf-8"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_PHRASES[420] = "Enhance Your Calm"


class Request:
    """One parsed request. ``headers`` has lower-cased names (repeated headers joined with
    ``, ``); ``raw_headers`` keeps names and order as sent."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query", "raw_headers",
                 "target")

    def __init__(self, method: str, target: str, *, headers: dict[str, str],
                 raw_headers: list[tuple[str, str]], body: bytes, keep_alive: bool) -> None:
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition("?")
        self.headers = headers
        self.raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, body, its content type and any extra headers."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, keep_alive: bool, date: str) -> bytes:
        """The full answer, status line to body, sent at ``date`` (an IMF-fixdate)."""
        lines = [
            f"HTTP/1.1 {self.status} {_PHRASES.get(self.status, 'Unknown')}",
            f"Date: {date}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class Exchange(Protocol):
    """A request admitted by the handler: the faults it meets, and how to answer it."""

    @property
    def decision(self) -> Decision:
        """The faults decided for the request."""

    def respond(self) -> Response:
        """Apply the request and build its answer (called at most once)."""


class Handler(Protocol):
    """What the server asks about every request it reads, and the time it answers at."""

    def admit(self, request: Request) -> Exchange:
        """Decide the request's faults (it is not applied yet)."""

    def now(self) -> int:
        """The server's clock, in epoch milliseconds (sent as the ``Date`` header)."""


def http_date(epoch_ms: int) -> str:
    """An RFC 9110 IMF-fixdate, e.g. ``Wed, 25 Nov 2026 16:00:00 GMT``."""
    return formatdate(epoch_ms / 1000, usegmt=True)


class _BadRequestError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._serve_buffered()

    def close(self, abort: bool = False) -> None:
        """Close now (``abort``: without flushing, so the peer may see a reset)."""
        transport = self._transport
        if transport is not None:
            self._transport = None
            self._buffer.clear()
            if abort:
                transport.abort()
            else:
                transport.close()

    def _serve_buffered(self) -> None:
        while not self._busy and self._transport is not None:
            try:
                request = self._parse()
            except _BadRequestError as problem:
                body = b'{"error":true,"reason":"%s","data":{}}' % problem.reason.encode()
                self._send(self._encode(Response(problem.status, body), False), False)
                return
            if request is None:
                return
            self._serve(request)

    def _serve(self, request: Request) -> None:
        exchange = self._server.handler.admit(request)
        decision = exchange.decision
        if decision.outcome is Outcome.DROP_BEFORE:
            self.close(abort=True)
        elif decision.outcome is Outcome.HANG:
            self._busy = True
        elif decision.deferred:
            self._busy = True
            self._server.track(asyncio.get_running_loop().create_task(
                self._serve_later(request, exchange)))
        else:
            response = exchange.respond()
            if decision.outcome is Outcome.DROP_AFTER:
                self.close()
            else:
                self._send(self._encode(response, request.keep_alive), request.keep_alive)

    async def _serve_later(self, request: Request, exchange: Exchange) -> None:
        decision = exchange.decision
        await asyncio.sleep(decision.delay)
        response = exchange.respond()
        if decision.outcome is Outcome.DROP_AFTER:
            self.close()
            return
        payload = self._encode(response, request.keep_alive)
        if decision.slow_chunk:
            start = payload.index(b"\r\n\r\n") + 4
            chunks = [payload[:start]] + [
                payload[offset:offset + decision.slow_chunk]
                for offset in range(start, len(payload), decision.slow_chunk)
            ]
            for chunk in chunks[:-1]:
                if self._transport is None:
                    return
                self._transport.write(chunk)
                await asyncio.sleep(decision.slow_delay)
            payload = chunks[-1]
        self._busy = False
        self._send(payload, request.keep_alive)
        self._serve_buffered()

    def _encode(self, response: Response, keep_alive: bool) -> bytes:
        return response.encode(keep_alive, self._server.date())

    def _send(self, payload: bytes, keep_alive: bool) -> None:
        if self._transport is not None:
            self._transport.write(payload)
            if not keep_alive:
                self.close()

    def _parse(self) -> Request | None:
        buffer = self._buffer
        while buffer.startswith(b"\r\n"):
            del buffer[:2]
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD:
            if len(buffer) > MAX_HEAD:
                raise _BadRequestError(431, "headers_too_large")
            return None
        lines = buffer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequestError(400, "invalid_request")
        method, target, version = parts
        headers: dict[str, str] = {}
        raw_headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadRequestError(400, "invalid_request")
            value = value.strip()
            raw_headers.append((name, value))
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "transfer-encoding" in headers:
            raise _BadRequestError(501, "not_implemented")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequestError(400, "invalid_request")
        length = int(length_text)
        if length > MAX_BODY:
            raise _BadRequestError(413, "payload_too_large")
        start = end + 4
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start:start + length])
        del buffer[:start + length]
        connection = headers.get("connection", "").lower()
        keep_alive = ("close" not in connection if version == "HTTP/1.1"
                      else "keep-alive" in connection)
        return Request(method, target, headers=headers, raw_headers=raw_headers, body=body,
                       keep_alive=keep_alive)


class HttpServer:
    """Serves a `Handler` on a TCP port of the running event loop."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._date_second: int | None = None
        self._date = ""

    def date(self) -> str:
        """The ``Date`` header's value now, by the handler's clock (formatted once a
        second, as answers are many)."""
        second = self.handler.now() // 1000
        if second != self._date_second:
            self._date_second = second
            self._date = http_date(second * 1000)
        return self._date

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0 picks a free one); the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port,
                                                backlog=1024)
        port_number: int = self._server.sockets[0].getsockname()[1]
        return port_number

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a deferred answer's task until it ends, so `close` can cancel it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening, drop every connection and cancel every pending answer."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close(abort=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Aborted transports close their sockets in a callback of the next loop iteration.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
