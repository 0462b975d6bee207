"""A private redis-server for tests, and the pytest fixtures serving it.

Each `RedisServer` runs its own ``redis-server`` on a free loopback port, with a password (so
tests can check it never reaches a log), no persistence (``--save ''``, ``--appendonly no``)
and a scratch directory. It can be killed and started again on the same port, as an outage
would. Tests that need one skip, saying why, when ``redis-server`` or the ``redis`` package is
missing; CI installs both.

Use with ``pytest_plugins = ["tests.redis_server"]`` (and import `RedisServer` only under
``TYPE_CHECKING``, so the plugin is imported first): ``redis_server`` is one server for the
session, ``redis_url`` its URL with the database emptied before the test, and
``redis_server_factory`` starts servers of the test's own (to kill or freeze).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self

import pytest

PASSWORD = "redis-pass-5e1f"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` as a child process on ``127.0.0.1:port`` (a free port by default)."""

    def __init__(self, port: int = 0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not installed (CI installs it: apt-get install "
                        "redis-server)")
        pytest.importorskip("redis", reason="the redis package is not installed "
                                            "(pip install 'crisp-api-next[redis]')")
        self.executable = executable
        self.port = port or _free_port()
        self._directory = tempfile.TemporaryDirectory(prefix="crisp-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL with the password, as a client would be configured."""
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        """A redis-py client on this server, for looking at what the backends stored."""
        import redis  # noqa: PLC0415 (skipped above when missing)

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> Self:
        """Start (or restart) on the same port; returns once it answers PING."""
        self._process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--requirepass", PASSWORD,
             "--dir", self._directory.name, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except Exception:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: gone at once, with everything it held (nothing is persisted)."""
        self._stop(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a stalled server)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop and clean up (idempotent)."""
        self._stop(signal.SIGKILL)
        self._directory.cleanup()

    def _stop(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(sig)
        process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its data emptied first."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[[], RedisServer]]:
    """Starts private servers on demand; all are stopped after the test."""
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
