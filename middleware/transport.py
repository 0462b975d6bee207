"""The bottom of every pipeline: urllib3 connection pools, keep-alive, no urllib3 retries.

The pipeline owns retrying, so urllib3's own retries and redirects are off, and every urllib3
failure is translated into a `TransportError` subclass that says whether the request may have
reached the server.

A request's ``deadline`` bounds the whole exchange, not each socket read: the connect and read
timeouts are shortened to what is left of it, and the body is read as it arrives, checking the
deadline between reads, so a server trickling a byte a second cannot hold a call past it.

Each origin is reached directly or through the proxy its `Proxies` value names, by urllib3's
``ProxyManager``: an https origin through a ``CONNECT`` tunnel (TLS end to end, the proxy sees
only the host and port), an http origin by handing the proxy the absolute URL.

The pools' connections read each answer's header fields with `middleware.response_head`,
which spares most answers ``http.client``'s email parser (the costliest step of reading one).
"""

from __future__ import annotations

import threading
import time

import urllib3
from urllib3 import exceptions as u3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from middleware.errors import (
    BodyTooLargeError,
    ConnectError,
    ConnectionDroppedError,
    DeadlineExceededError,
    ProxyConnectError,
    ReadTimeoutError,
    TLSError,
    TransportError,
)
from middleware.message import Request, Response
from middleware.proxy import DIRECT, Proxies, Proxy
from middleware.response_head import HeadHTTPConnection, HeadHTTPSConnection

DEFAULT_MAX_BODY = 32 * 1024 * 1024

_Route = tuple[HTTPConnectionPool, str, Proxy | None]
"""How an origin is reached: its pool, what goes before a request's path in the request line
(the origin, for an http origin forwarded by a proxy), and the proxy, if any."""


class Urllib3Transport:
    """Sends requests over pooled keep-alive connections and reads whole (bounded) bodies.

    Thread-safe: urllib3 pools are, and the origin-to-pool map only ever grows under a lock.
    Certificate verification is always on for https (urllib3's default, never switched off);
    ``ca_certs`` (a PEM file) replaces the system's certificate authorities. ``proxies``
    says which proxy each origin goes through (none by default).
    """

    def __init__(
        self,
        *,
        timeout: urllib3.Timeout,
        pool_size: int = 32,
        max_body: int = DEFAULT_MAX_BODY,
        proxies: Proxies = DIRECT,
        ca_certs: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        if max_body < 1:
            raise ValueError(f"max_body must be at least 1 byte, got {max_body}")
        self.timeout = timeout
        self.max_body = max_body
        self.proxies = proxies
        self._pool_size = pool_size
        self._ca_certs = ca_certs
        self._manager = urllib3.PoolManager(
            num_pools=8, maxsize=pool_size, retries=False, ca_certs=ca_certs
        )
        self._proxy_managers: dict[Proxy, urllib3.ProxyManager] = {}
        self._pools: dict[str, _Route] = {}
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        route = self._pools.get(request.origin)
        if route is None:
            route = self._pool_for(request.origin)
        pool, target, proxy = route
        timeout = request.timeout or self.timeout
        if request.deadline is not None:
            timeout = _within_deadline(timeout, request)
        try:
            raw = pool.urlopen(
                request.method,
                target + request.path,
                body=request.body,
                headers=request.headers,
                retries=_NO_RETRY,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
                preload_content=False,
            )
        except (u3.NewConnectionError, u3.ConnectTimeoutError, u3.ProxyError) as exc:
            if proxy is not None:  # the only connection opened is the proxy's
                raise ProxyConnectError(
                    f"proxy {proxy.url} unreachable or refused the tunnel: {_describe(exc)}",
                    request.method, request.route,
                ) from None
            raise ConnectError(_describe(exc), request.method, request.route) from None
        except u3.SSLError as exc:
            raise TLSError(_describe(exc), request.method, request.route) from None
        except u3.ReadTimeoutError as exc:
            if _past(request):
                raise DeadlineExceededError(request.method, request.route, sent=True) from None
            raise ReadTimeoutError(_describe(exc), request.method, request.route) from None
        except (u3.ProtocolError, OSError) as exc:
            raise ConnectionDroppedError(_describe(exc), request.method, request.route) from None
        except u3.HTTPError as exc:
            raise TransportError(_describe(exc), request.method, request.route) from None
        return self._read(raw, request)

    def _read(self, raw: urllib3.BaseHTTPResponse, request: Request) -> Response:
        """Read the body up to ``max_body``; a larger one closes the connection unread."""
        try:
            if request.method == "HEAD":
                body = b""
            elif request.deadline is None:
                length = raw.length_remaining
                # A known length within the bound is read whole: one read, where a bounded
                # read(amt) costs a second one to see the end (and urllib3's buffering).
                body = raw.read() if length is not None and length <= self.max_body else (
                    raw.read(self.max_body + 1))
            else:
                body = _read_by(raw, request, self.max_body + 1, request.deadline)
        except u3.ReadTimeoutError as exc:
            raw.close()
            if _past(request):
                raise DeadlineExceededError(
                    request.method, request.route, sent=True, status=raw.status
                ) from None
            raise ReadTimeoutError(
                _describe(exc), request.method, request.route, raw.status
            ) from None
        except (u3.HTTPError, OSError) as exc:
            raw.close()
            raise ConnectionDroppedError(
                _describe(exc), request.method, request.route, raw.status
            ) from None
        if len(body) > self.max_body:
            raw.close()
            raise BodyTooLargeError(self.max_body, raw.status, request.method, request.route)
        raw.release_conn()
        return Response(raw.status, raw.headers, body)

    def _pool_for(self, origin: str) -> _Route:
        with self._lock:
            route = self._pools.get(origin)
            if route is None:
                proxy = self.proxies.for_origin(origin)
                if proxy is None:
                    route = (self._manager.connection_from_url(origin), "", None)
                else:
                    manager = self._proxy_managers.get(proxy)
                    if manager is None:
                        manager = urllib3.ProxyManager(
                            proxy.url, num_pools=8, proxy_headers=proxy.headers,
                            maxsize=self._pool_size, retries=False, ca_certs=self._ca_certs,
                        )
                        self._proxy_managers[proxy] = manager
                    # An http origin is forwarded: the proxy is given the absolute URL. An
                    # https one is tunnelled (CONNECT): the request line stays a path.
                    target = origin if origin.startswith("http://") else ""
                    route = (manager.connection_from_url(origin), target, proxy)
                _read_heads_fast(route[0])
                self._pools[origin] = route
            return route

    def close(self) -> None:
        """Close every pooled connection; the transport may still be used afterwards."""
        with self._lock:
            self._pools.clear()
            self._manager.clear()
            for manager in self._proxy_managers.values():
                manager.clear()


def _read_heads_fast(pool: HTTPConnectionPool) -> None:
    """Have ``pool`` open connections whose answers `middleware.response_head` reads."""
    if isinstance(pool, HTTPSConnectionPool):
        pool.ConnectionCls = HeadHTTPSConnection
    else:
        pool.ConnectionCls = HeadHTTPConnection


_NO_RETRY = urllib3.Retry(False, redirect=False)
"""What ``retries=False`` means to urllib3, built once: given ``False``, urllib3 builds (and
logs) this object anew on every request. Retries are the retry layer's, never urllib3's."""


def _within_deadline(timeout: urllib3.Timeout, request: Request) -> urllib3.Timeout:
    """``timeout``, shortened to what is left of the request's deadline (which must be set)."""
    assert request.deadline is not None
    left = request.deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError(request.method, request.route, sent=False)
    connect, read = timeout.connect_timeout, timeout.read_timeout
    if isinstance(connect, int | float) and isinstance(read, int | float) and left >= max(
        connect, read
    ):
        return timeout
    return urllib3.Timeout(
        connect=left if not isinstance(connect, int | float) else min(connect, left),
        read=left if not isinstance(read, int | float) else min(read, left),
    )


def _read_by(raw: urllib3.BaseHTTPResponse, request: Request, limit: int, deadline: float) -> bytes:
    """Up to ``limit`` bytes of the body, as they arrive, giving up at ``deadline``.

    Each read returns what the socket has; when less time is left than the socket's read
    timeout, the timeout is cut to it, so a trickle ends at the deadline, not a read later.
    The common case, a body of known length already in the connection's buffer (one peek,
    no wait beyond one socket read), is read in one call, at the cost of a plain read.
    """
    length = raw.length_remaining
    buffered = getattr(getattr(raw, "_fp", None), "fp", None)
    if length is not None and length < limit and buffered is not None:
        try:
            ready = len(buffered.peek(length))
        except (OSError, ValueError):
            ready = -1
        if ready >= length:
            return raw.read()
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raw.close()
            raise DeadlineExceededError(
                request.method, request.route, sent=True, status=raw.status
            )
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None and (sock.gettimeout() or left + 1) > left:
            sock.settimeout(left)
        chunk = raw.read1(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _past(request: Request) -> bool:
    """Whether the request's deadline (if any) has passed."""
    return request.deadline is not None and time.monotonic() >= request.deadline


def _describe(exc: BaseException) -> str:
    """A short reason for a urllib3 failure (urllib3 never puts headers in its messages)."""
    return f"{type(exc).__name__}: {exc}"[:300]
