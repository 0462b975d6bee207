"""`FakeCrisp`: a fake Crisp served from a background thread of the test process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from crisp_api.testing.base import FakeBase
from crisp_api.testing.controls import Controls
from crisp_api.testing.faults import Faults
from crisp_api.testing.http11 import HttpServer
from crisp_api.testing.service import DEFAULT_IDENTIFIER, DEFAULT_KEY, DEFAULT_TIER, Service
from crisp_api.testing.stats import StatsSnapshot


class FakeCrisp(FakeBase, Controls):
    """A stateful fake Crisp REST API on ``127.0.0.1`` (a free port by default), served by its
    own event loop in a background thread.

    Use it as a context manager (or `start`/`stop`)::

        with FakeCrisp(conversations=200, messages=30, seed=1) as fake:
            client = fake.client()

    The data is seeded (see `crisp_api.testing.world`); the activity and ground-truth helpers
    come from `Controls`.

    Its tokens belong to ``tier`` (``plugin`` by default): REST requests and RTM sockets on
    another tier are refused, as Crisp does. It serves Crisp's RTM API too (`rtm_url`, on
    ``rtm_port``, a free one by default), pushing every change made through its routes or
    helpers as a real-time event (see `crisp_api.testing.rtm`); ``rtm=False`` leaves it out,
    and with it the need for the ``testing`` extra.

    The server's clock starts at ``now_ms`` (epoch ms), or at the real time plus
    ``clock_offset_ms`` (e.g. ``-3_600_000`` for a server one hour behind its clients), or at
    the real time; everything it stamps, filters by and sends as ``Date`` follows it.
    ``partial_status=False`` makes every page of messages answer 200, where Crisp answers 206
    while older messages remain.
    """

    def __init__(self, *, websites: int = 1, conversations: int = 200, messages: int = 30,
                 people: int | None = None, operators: int = 3, seed: int = 1,
                 faults: Faults | None = None, identifier: str = DEFAULT_IDENTIFIER,
                 key: str = DEFAULT_KEY, host: str = "127.0.0.1", port: int = 0,
                 now_ms: int | None = None, clock_offset_ms: int | None = None,
                 partial_status: bool = True, log_size: int = 1000,
                 tier: str = DEFAULT_TIER, rtm: bool = True, rtm_port: int = 0) -> None:
        self._service = Service(websites=websites, conversations=conversations,
                                messages=messages, people=people, operators=operators,
                                seed=seed, now_ms=now_ms, clock_offset_ms=clock_offset_ms,
                                partial_status=partial_status, identifier=identifier, key=key,
                                faults=faults, log_size=log_size, tier=tier, rtm=rtm)
        Controls.__init__(self, self._service.world)
        self.host = host
        self.port = port
        self._rtm_port = rtm_port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: Exception | None = None

    @property
    def url(self) -> str:
        """The REST host, e.g. ``http://127.0.0.1:54321`` (the API is under ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def identifier(self) -> str:
        """The token identifier the fake accepts."""
        return self._service.identifier

    @property
    def key(self) -> str:
        """The token key the fake accepts."""
        return self._service.key

    @property
    def tier(self) -> str:
        """The tier of the fake's tokens."""
        return self._service.tier

    @property
    def rtm_url(self) -> str | None:
        """The RTM URL (e.g. ``http://127.0.0.1:54322/``) while running; None otherwise or
        without RTM."""
        return self._service.world.rtm_url

    def drop_sockets(self) -> int:
        """Cut every RTM socket's connection now; how many were cut."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("FakeCrisp is not running")

        async def drop() -> int:
            return self._service.drop_sockets()

        return asyncio.run_coroutine_threadsafe(drop(), loop).result()

    def take_rtm_down(self, *, discovery_status: int | None = None) -> None:
        """Start an RTM outage: every socket cut, the RTM port closed, changes meanwhile not
        pushed to anyone; ``GET /plugin/connect/endpoints`` still names the closed port, or
        answers ``discovery_status`` (e.g. 404) when given. `bring_rtm_back` ends it."""
        self._on_loop(self._service.take_rtm_down(discovery_status))

    def bring_rtm_back(self) -> None:
        """End an RTM outage: RTM is served again on the same port."""
        self._on_loop(self._service.bring_rtm_back())

    def _on_loop(self, work: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None:
            work.close()
            raise RuntimeError("FakeCrisp is not running")
        asyncio.run_coroutine_threadsafe(work, loop).result()

    def push_event(self, name: str, data: object) -> None:
        """Push a raw RTM event (any JSON ``data``) to the sockets listening to ``name``."""
        self._service.push_event(name, data)

    @property
    def plugin_id(self) -> str:
        """What ``GET /plugin/connect/account`` answers."""
        return self._service.world.plugin_id

    @property
    def stats(self) -> StatsSnapshot:
        """A snapshot of the request counters and log."""
        return self._service.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and empty the request log."""
        self._service.stats.reset()

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._service.api.faults

    def _replace_faults(self, faults: Faults) -> None:
        self._service.api.set_faults(faults)

    def start(self) -> Self:
        """Listen and serve in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FakeCrisp is already running")
        ready = threading.Event()
        self._failure = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-crisp",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            raise self._failure
        return self

    def stop(self) -> None:
        """Close every connection, stop serving and join the thread (idempotent)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._thread = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except Exception as failure:  # reported by start(): the port may be taken
            self._failure = failure
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        server = HttpServer(self._service)
        self.port = await server.start(self.host, self.port)
        try:
            await self._service.start_rtm(self.host, self._rtm_port)
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            ready.set()
            await self._stopping.wait()
        finally:
            await self._service.stop_rtm()
            await server.close()
