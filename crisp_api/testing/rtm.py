"""The fake's RTM API: Crisp's real-time events over Socket.IO, on a port of its own.

It speaks what Crisp's RTM servers speak to the official clients: a Socket.IO server (Engine.IO
protocol 4) at the root path of its URL, which ``GET /v1/plugin/connect/endpoints`` hands out
as ``socket.app``. A socket sends ``authentication`` with ``{"username", "password", "tier",
"events"}``; valid credentials on the fake's tier get ``authenticated`` and, from then on,
every event named in ``events`` for every website of the fake; anything else gets
``unauthorized`` and is disconnected. Sockets that have not authenticated get nothing.

The events come from `crisp_api.testing.world.World.emit` (every change, whether made by a
route or a test helper), through `RtmServer.publish`, in the order of the changes, each held
back by the faults' ``event_delay_ms``. `RtmServer.drop` cuts every socket's TCP connection at
once, as a network failure or a server restart would, so clients must reconnect.

Socket.IO needs a web server that python-socketio can drive: aiohttp is the one it supports
natively on asyncio (no ASGI server to add), so the RTM server is an aiohttp application on
the fake's own event loop, next to the REST server (whose hand-made HTTP/1.1 server has no
WebSocket). Both come with the ``testing`` extra, and are imported only when a fake serves RTM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from crisp_api.extras import install_hint

if TYPE_CHECKING:
    from aiohttp import web

INSTALL_HINT = (
    f"the fake Crisp's RTM server needs the 'testing' extra: {install_hint('testing')} "
    "(or run the fake with rtm=False / --no-rtm)"
)
SHUTDOWN_TIMEOUT = 1.0
"""Seconds the web server may wait for its connections to end when it stops."""
UNAUTHORIZED_MESSAGE = "authentication refused: unknown credentials, or not on this tier"

logger = logging.getLogger(__name__)


class RtmServer:
    """The RTM server of one fake: accepts ``credentials`` (identifier to key) on ``tier``;
    ``delay()`` is the seconds each event is held back, read as it is published.

    `start`, `close` and `drop` run on the fake's event loop; `wants` and `publish` may be
    called from any thread.
    """

    def __init__(self, credentials: Mapping[str, str], tier: str,
                 delay: Callable[[], float]) -> None:
        try:
            import socketio  # noqa: PLC0415 (an optional dependency)
            from aiohttp import web  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self._web = web
        self._credentials = dict(credentials)
        self._tier = tier
        self._delay = delay
        self._sio: Any = socketio.AsyncServer(async_mode="aiohttp", logger=False,
                                              engineio_logger=False)
        self._sio.on("authentication", self._authenticate)
        self._sio.on("disconnect", self._forget)
        self._listeners: dict[str, frozenset[str]] = {}
        self._wanted: frozenset[str] = frozenset()
        self._connections: set[asyncio.Transport] = set()
        self._queue: asyncio.Queue[tuple[str, object, float]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); the bound port. Socket.IO is served at
        the root path, as Crisp's RTM URLs have none; and at ``//``, which python-socketio's
        own client asks for given such a URL (Node's Engine.IO server matches paths by prefix,
        so it takes that too)."""
        web = self._web
        app = web.Application(middlewares=[web.middleware(partial(_tracked, self._connections))])
        for path in ("/", "//"):
            app.router.add_route("GET", path, self._sio.handle_request)
            app.router.add_route("POST", path, self._sio.handle_request)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host, port, backlog=128)
        await site.start()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._pump = self._loop.create_task(self._send_events())
        bound: int = runner.addresses[0][1]
        return bound

    async def close(self) -> None:
        """Stop pushing events, cut every socket and stop listening."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        self.drop()
        await self._sio.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._loop = self._queue = None

    def wants(self, name: str) -> bool:
        """Whether an authenticated socket listens to event ``name``."""
        return name in self._wanted

    def publish(self, name: str, payload: object) -> None:
        """Queue event ``name`` for the sockets listening to it (from any thread)."""
        loop, queue = self._loop, self._queue
        if loop is not None and queue is not None:
            item = (name, payload, time.monotonic() + self._delay())
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def drop(self) -> int:
        """Cut the TCP connection of every socket now, without any closing handshake, as a
        network failure would; the number cut."""
        connections = list(self._connections)
        for transport in connections:
            transport.abort()
        return len(connections)

    async def _send_events(self) -> None:
        """Push the queued events one at a time, each no earlier than its due time, so that
        sockets get them in the order of the changes."""
        assert self._queue is not None
        while True:
            name, payload, due = await self._queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            for sid, names in list(self._listeners.items()):
                if name in names:
                    try:
                        await self._sio.emit(name, payload, to=sid)
                    except Exception:  # one broken socket must not stop the others' events
                        logger.exception("fake Crisp RTM could not push %s", name)

    async def _authenticate(self, sid: str, data: Any) -> None:
        events = self._subscription(data)
        if events is None:
            await self._sio.emit("unauthorized", {"message": UNAUTHORIZED_MESSAGE}, to=sid)
            await self._sio.disconnect(sid)
            return
        self._listeners[sid] = events
        self._wanted = frozenset().union(*self._listeners.values())
        await self._sio.emit("authenticated", True, to=sid)

    def _subscription(self, data: Any) -> frozenset[str] | None:
        """The events an ``authentication`` payload subscribes to, or None if it must be
        refused (malformed, unknown credentials, or another tier than the fake's)."""
        if not isinstance(data, dict):
            return None
        username, password, events = data.get("username"), data.get("password"), data.get(
            "events")
        if not (isinstance(username, str) and isinstance(password, str)
                and isinstance(events, list) and all(isinstance(name, str) for name in events)):
            return None
        if data.get("tier") != self._tier or self._credentials.get(username) != password:
            return None
        return frozenset(events)

    async def _forget(self, sid: str, reason: object = None) -> None:
        if self._listeners.pop(sid, None) is not None:
            self._wanted = frozenset().union(*self._listeners.values())


async def _tracked(connections: set[asyncio.Transport], request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    """Middleware: keep each request's connection in ``connections`` while its handler runs
    (a WebSocket's handler runs as long as the socket), so that `RtmServer.drop` can cut
    them."""
    transport = request.transport
    if transport is None:
        return await handler(request)
    connections.add(transport)
    try:
        return await handler(request)
    finally:
        connections.discard(transport)
