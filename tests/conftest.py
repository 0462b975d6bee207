"""Shared fixtures: a scripted loopback server and a client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from crisp_api import Crisp
from tests.scripted_server import ScriptedServer

IDENTIFIER = "ident-7f3c"
KEY = "secret-key-4d9a1b"


GROUPS = ("middleware", "client", "testing", "sync", "fleet")
"""The test folders, each also a marker (``pytest -m sync``)."""
SERVICES = {
    "redis": {"redis_server", "redis_url", "redis_server_factory"},
    "postgres": {"postgres_server", "postgres_url", "postgres_server_factory"},
}
"""Markers given to the tests that use a real service, by the fixtures that start it."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its group (its folder) and the services it starts."""
    for item in items:
        group = item.path.parent.name
        if group in GROUPS:
            item.add_marker(group)
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in SERVICES.items():
            if used & fixtures or marker in item.path.name:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _structlog_as_new() -> Iterator[None]:
    """Each test starts with structlog unconfigured: the client's default logger follows
    structlog once an application configures it, and ``capture_logs`` leaves it configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


class SleepRecorder:
    """Stands in for ``time.sleep`` in pipeline layers, so tests see waits without waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[Crisp]:
    with Crisp(timeout=5) as crisp:
        crisp.set_rest_host(server.url)
        crisp.authenticate(IDENTIFIER, KEY)
        yield crisp
