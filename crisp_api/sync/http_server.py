"""A small HTTP/1.1 server that holds under slow, idle and many clients (follow mode's ports).

One asyncio loop, in one thread, owns every connection. It reads each request's head and body
itself, so a slow or idle client costs a socket, never a thread; only complete requests reach
the ``workers`` threads that run the application. The limits, all in `Limits`:

- a connection may wait ``idle_timeout`` for the first byte of a request (keep-alive included);
  once a request has begun, its whole head and body must be in within ``read_timeout``, however
  slowly the bytes trickle (slowloris), else it gets 408 and is closed;
- at most ``max_connections`` are open at once, idle keep-alive ones included; any further
  connection gets 503 with ``Retry-After`` at once, from the loop, and is closed;
- a head larger than ``max_head`` gets 431, a body larger than ``max_body`` 413 (unread), a
  ``POST``/``PUT``/``PATCH`` without ``Content-Length`` (chunked bodies included) 411, a head
  that is not HTTP/1.x 400; each closes the connection. ``Expect: 100-continue`` is answered
  once the length is accepted.

A client that goes away (reset, broken pipe, closed mid-request) is counted in `Counts` and
logged at debug, never reported with a traceback. An application that raises gives 500, with
nothing of the error in the answer, and is logged once through structlog.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog

DEFAULT_WORKERS = 8
"""Threads that run the application; requests beyond them wait their turn in the loop."""
DEFAULT_MAX_CONNECTIONS = 100
"""Connections open at once (idle keep-alive ones included) before new ones get 503."""
DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a request's whole head and body may take to arrive, from its first byte."""
DEFAULT_IDLE_TIMEOUT = 5.0
"""Seconds a connection may wait for the first byte of a request before it is closed."""
DEFAULT_MAX_HEAD = 16 * 1024
"""Bytes of request line and headers read at most (431 beyond)."""
DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes of body read at most (413 beyond, unread)."""
RETRY_AFTER = 1
"""Seconds the 503 of a full server asks a client to wait."""
LINGER = 1.0
"""Seconds a refused connection is drained after its answer, so the client reads the answer
instead of a reset."""
BACKLOG = 1024
"""Connections the kernel queues before the loop accepts them."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Limits:
    """What one client may cost the server; see the module docstring."""

    workers: int = DEFAULT_WORKERS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_head: int = DEFAULT_MAX_HEAD
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        for name in ("workers", "max_connections", "max_head", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("read_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class HttpRequest:
    """One complete request: ``path`` without its query, header names in lower case;
    ``keep_alive`` whether the client wants the connection kept after the answer."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    keep_alive: bool = True


@dataclass(frozen=True)
class Answer:
    """What the application answers; ``headers`` are extra ones (``Allow``, ...)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


App = Callable[[HttpRequest], Answer]
"""The application: runs in a worker thread, one call per complete request."""


@dataclass
class Counts:
    """What the server turned away or lost, since it started (written by the loop only)."""

    connections: int = 0
    """Connections admitted."""
    refused: int = 0
    """Connections answered 503 because ``max_connections`` were open."""
    timed_out: int = 0
    """Requests cut by ``read_timeout`` (idle connections closed are not counted)."""
    malformed: int = 0
    """Requests answered 400, 411, 413 or 431 by the server itself."""
    gone: int = 0
    """Clients that went away: reset, broken pipe, closed mid-request."""
    failed: int = 0
    """Requests whose application call raised (answered 500)."""


class _Refusal(Exception):  # noqa: N818 - an answer, not an error of the API
    """A request the server answers itself, then closes the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.answer = _answer_for(status, reason)


_GONE = (ConnectionError, asyncio.IncompleteReadError)
"""What a client that went away raises in the loop."""


class HttpServer:
    """Serves ``app`` on ``host:port`` (port 0: a free one) from a daemon thread until
    `shutdown`; the socket is bound before the constructor returns (``OSError`` if it cannot)."""

    def __init__(self, host: str, port: int, app: App, *, limits: Limits | None = None,
                 logger: Any = None) -> None:
        self.limits = limits or Limits()
        self.counts = Counts()
        self._app = app
        self._logger = logger if logger is not None else structlog.get_logger("crisp_sync")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        self._pool = ThreadPoolExecutor(self.limits.workers,
                                        thread_name_prefix="crisp-sync-http-worker")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._tasks: set[asyncio.Task[None]] = set()
        self._admitted = 0
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="crisp-sync-http", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def shutdown(self) -> None:
        """Stop accepting, close every connection, and let the loop's thread end."""
        stopping = self._stopping
        if stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(stopping.set)
            self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except Exception as exc:  # the loop could not start: raised by the constructor
            self._failure = exc
        finally:
            self._ready.set()
            self._loop.close()
            self._socket.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._accepted, sock=self._socket,
                                            limit=self.limits.max_head)
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a connection callback always runs in its task
        self._tasks.add(task)
        admitted = self._admitted < self.limits.max_connections
        self._admitted += int(admitted)
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits for the last byte
        try:
            if admitted:
                self.counts.connections += 1
                await self._converse(reader, writer)
            else:
                self.counts.refused += 1
                await self._close_after(reader, writer, _full())
        except _GONE as exc:
            self.counts.gone += 1
            self._logger.debug("http.client_gone", error=type(exc).__name__)
        except TimeoutError:  # the client did not read its answer
            self.counts.timed_out += 1
        finally:
            self._admitted -= int(admitted)
            self._tasks.discard(task)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # an answer the client would not read
            else:
                writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until it closes, idles out, or errs."""
        limits = self.limits
        while True:
            try:
                first = await asyncio.wait_for(reader.read(1), limits.idle_timeout)
            except TimeoutError:
                return
            if not first:
                return
            try:
                async with asyncio.timeout(limits.read_timeout):
                    request = await self._read(first, reader, writer)
            except TimeoutError:
                self.counts.timed_out += 1
                await self._close_after(reader, writer, _answer_for(408, "request_timeout"))
                return
            except _Refusal as refusal:
                self.counts.malformed += 1
                await self._close_after(reader, writer, refusal.answer)
                return
            answer, failed = await self._loop.run_in_executor(self._pool, self._call, request)
            self.counts.failed += failed
            await self._send(writer, answer, keep_alive=request.keep_alive)
            if not request.keep_alive:
                return

    async def _read(self, first: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> HttpRequest:
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _Refusal(431, "head_too_large") from None
        method, path, headers, keep_alive = _parse_head(head)
        if "transfer-encoding" in headers:
            raise _Refusal(411, "length_required")
        length = headers.get("content-length")
        if length is None:
            if method in _BODY_METHODS:
                raise _Refusal(411, "length_required")
            return HttpRequest(method, path, headers, b"", keep_alive)
        if not (length.isascii() and length.isdigit()):
            raise _Refusal(400, "bad_length")
        if int(length) > self.limits.max_body:
            raise _Refusal(413, "too_large")
        if headers.get("expect", "").lower() == "100-continue":  # curl's, for large bodies
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(int(length))
        return HttpRequest(method, path, headers, body, keep_alive)

    def _call(self, request: HttpRequest) -> tuple[Answer, bool]:
        """Run the application in a worker thread; an error becomes a bare 500."""
        try:
            return self._app(request), False
        except Exception as exc:
            self._logger.error("http.handler_failed", method=request.method, path=request.path,
                               error=type(exc).__name__, reason=str(exc))
            return _answer_for(500, "internal"), True

    async def _send(self, writer: asyncio.StreamWriter, answer: Answer, *,
                    keep_alive: bool) -> None:
        writer.write(_encode(answer, keep_alive=keep_alive))
        await asyncio.wait_for(writer.drain(), self.limits.read_timeout)

    async def _close_after(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           answer: Answer) -> None:
        """Send ``answer``, end our side, and drain the client's for at most `LINGER` seconds,
        so it reads the answer rather than a reset."""
        await self._send(writer, answer, keep_alive=False)
        if writer.can_write_eof():
            writer.write_eof()
        try:
            async with asyncio.timeout(LINGER):
                while await reader.read(self.limits.max_head):
                    pass
        except (TimeoutError, asyncio.LimitOverrunError):
            pass

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own reports (e.g. no descriptor left to accept with): one line, no
        traceback."""
        error = context.get("exception")
        self._logger.warning("http.loop_error", message=context.get("message"),
                             error=None if error is None else type(error).__name__)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool]:
    """The method, path (query dropped), headers and keep-alive wish of a request head, or
    `_Refusal` 400."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[0].isalpha():
        raise _Refusal(400, "bad_request_line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _Refusal(400, "bad_header")
        key = name.lower()
        if key == "content-length" and key in headers:
            raise _Refusal(400, "bad_length")
        headers[key] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection == "keep-alive" if parts[2] == "HTTP/1.0" else connection != "close"
    return parts[0], parts[1].split("?", 1)[0], headers, keep_alive


def _answer_for(status: int, reason: str) -> Answer:
    return Answer(status, b'{"error": "%s"}' % reason.encode())


def _full() -> Answer:
    return Answer(503, b'{"error": "busy"}', headers=(("Retry-After", str(RETRY_AFTER)),))


def _encode(answer: Answer, *, keep_alive: bool) -> bytes:
    status = answer.status
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Server: crisp-sync",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        *(f"{name}: {value}" for name, value in answer.headers),
    ]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body

