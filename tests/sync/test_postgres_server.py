"""The private PostgreSQL server of the tests: a database of each test's own, run unprivileged."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

#: Databases the runs below were given, to check each run's is new and the earlier ones gone.
SEEN: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_new_empty_database_dropped_after(
        run: int, postgres_server: PostgresServer, postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == (
        "postgresql", "crisp", "127.0.0.1", postgres_server.port)
    name = parts.path.lstrip("/")
    with postgres_server.connect(name) as connection:
        tables = connection.execute("SELECT count(*) FROM pg_tables "
                                    "WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        connection.execute("CREATE TABLE marker (run int)")  # seen by the next run if shared
    with postgres_server.connect() as connection:
        databases = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
    assert name in databases
    assert not databases & set(SEEN)
    SEEN.append(name)


def test_runs_unprivileged_and_stops_without_a_trace(
        postgres_server_factory: Callable[[], PostgresServer]) -> None:
    server = postgres_server_factory()
    expected = os.geteuid() if server.os_user is None else pwd.getpwnam(server.os_user).pw_uid
    if os.geteuid() == 0:
        assert expected != 0
    with server.connect() as connection:
        row = connection.execute("SELECT current_setting('data_directory'), "
                                 "pg_backend_pid()").fetchone()
        assert row is not None
        data_directory, backend = row
        # The backend lives as long as its connection: its owner is read while the connection
        # is open (once closed, the backend exits, and its /proc entry with it, at any moment).
        assert os.stat(f"/proc/{backend}").st_uid == expected
    assert os.stat(data_directory).st_uid == expected

    server.stop()
    server.stop()  # idempotent
    assert not os.path.exists(server.directory)
    assert not os.path.exists(f"/proc/{backend}")
