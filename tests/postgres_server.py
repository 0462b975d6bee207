"""A private PostgreSQL server for tests, and the pytest fixtures serving it.

Each `PostgresServer` runs ``initdb`` into a scratch directory (trust authentication, superuser
``crisp``, UTF8) and then ``postgres`` as a child process on a free loopback port, its unix socket
in that directory, tuned for tests rather than durability (``fsync``, ``synchronous_commit`` and
``full_page_writes`` off). PostgreSQL refuses to run as root: when the tests are, the server runs
as ``postgres`` (or ``nobody``), the scratch directory being given to that user. Tests that need
one skip, saying why, when the PostgreSQL binaries or the ``psycopg`` package are missing; CI
installs both.

Use with ``pytest_plugins = ["tests.postgres_server"]`` (and import `PostgresServer` only under
``TYPE_CHECKING``, so the plugin is imported first): ``postgres_server`` is one server for the
session, ``postgres_url`` the URL of a new empty database of the test's own (dropped after it),
and ``postgres_server_factory`` starts servers of the test's own.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self, TypedDict

import pytest

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

USER = "crisp"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: Settings for fast, throwaway servers: nothing here needs to survive a crash.
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_counter = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _find_binaries() -> dict[str, str] | None:
    """``initdb``, ``pg_ctl`` and ``postgres``: from PATH, else the newest Debian install."""
    names = ("initdb", "pg_ctl", "postgres")
    found = {name: shutil.which(name) for name in names}
    if all(found.values()):
        return {name: str(path) for name, path in found.items()}

    def version(directory: str) -> tuple[int, ...]:
        number = Path(directory).parent.name
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    for directory in sorted(glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        paths = {name: os.path.join(directory, name) for name in names}
        if all(os.access(path, os.X_OK) for path in paths.values()):
            return paths
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who the server runs as: None (ourselves) unless we are root, PostgreSQL refusing that."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("PostgreSQL refuses to run as root, and there is no 'postgres' or 'nobody' "
                "user to run it as")


def _traversable(directory: str) -> bool:
    """Whether every directory down to ``directory`` lets anyone through (o+x)."""
    path = Path(directory).resolve()
    return all(os.stat(part).st_mode & 0o001 for part in (path, *path.parents))


class _PortTaken(RuntimeError):
    """``postgres`` could not bind its port (taken between `_free_port` and the bind)."""


class _ChildOptions(TypedDict, total=False):
    """Keyword arguments of `subprocess.Popen` for the PostgreSQL programs."""

    cwd: str
    env: dict[str, str]
    user: int
    group: int
    extra_groups: list[int]


class PostgresServer:
    """``postgres`` as a child process on ``127.0.0.1:port`` (a free port by default)."""

    def __init__(self, port: int = 0) -> None:
        binaries = _find_binaries()
        if binaries is None:
            pytest.skip("the PostgreSQL server (initdb, pg_ctl, postgres) is not installed "
                        "(CI installs it: apt-get install postgresql)")
        pytest.importorskip("psycopg", reason="the psycopg package is not installed "
                                              "(pip install 'crisp-api-next[postgres]')")
        self.initdb, self.pg_ctl, self.postgres = (
            binaries["initdb"], binaries["pg_ctl"], binaries["postgres"])
        self.port = port or _free_port()
        self._fixed_port = bool(port)
        self._user = _unprivileged_user()
        parent = tempfile.gettempdir()
        if self._user is not None and not _traversable(parent):
            parent = "/tmp"  # the unprivileged user must reach the directory
        self.directory = tempfile.mkdtemp(prefix="crisp-postgres-", dir=parent)
        if self._user is not None:
            os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self.data_directory = os.path.join(self.directory, "data")
        self._log_path = os.path.join(self.directory, "postgres.log")
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def os_user(self) -> str | None:
        """The user the server runs as when we are root (None: it runs as ourselves)."""
        return None if self._user is None else self._user.pw_name

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database, as a client would be configured."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server (trust authentication: no password)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[TupleRow]:
        """An autocommit psycopg connection, for tests to look inside (close it after)."""
        import psycopg  # noqa: PLC0415 (skipped above when missing)

        return psycopg.connect(self.database_url(dbname), autocommit=True, connect_timeout=5)

    def create_database(self, name: str | None = None) -> str:
        """Create a new empty database (named uniquely by default); returns its URL."""
        from psycopg import sql  # noqa: PLC0415 (skipped above when missing)

        name = name or f"t_{next(_counter)}_{secrets.token_hex(4)}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, closing any connection still on it."""
        from psycopg import sql  # noqa: PLC0415 (skipped above when missing)

        with self.connect() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                               .format(sql.Identifier(name)))

    def start(self) -> Self:
        """Initialise the data directory if needed and start; returns once it takes queries."""
        if self._process is not None:
            return self
        if not os.path.exists(self.data_directory):
            self._run([self.initdb, "-D", self.data_directory, "-U", USER, "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"])
        attempts = 1 if self._fixed_port else 3
        while True:
            attempts -= 1
            self._spawn()
            try:
                self._wait_ready()
            except _PortTaken:
                self._stop()
                if not attempts:
                    raise
                self.port = _free_port()  # another process took it meanwhile
            except BaseException:
                self._stop()
                raise
            else:
                return self

    def restart(self) -> None:
        """Restart as an operator does (``pg_ctl restart -m fast``): every session cut, the
        data kept; returns once it takes queries again."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: sessions cut, data kept
            self._process.wait(STOP_TIMEOUT)
        self._stop()
        self.start()

    def stop(self) -> None:
        """Stop at once (immediate shutdown) and remove the directory (idempotent)."""
        self._stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self) -> None:
        """Stop at once (immediate shutdown), keeping the data: `start` starts it again, as
        after a crash or a restart of the database."""
        self._stop()

    def _spawn(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.directory,
            **SETTINGS,
        }
        command = [self.postgres, "-D", self.data_directory]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        self._log = open(self._log_path, "ab")  # noqa: SIM115 (closed in _stop)
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, **self._child_options(),
        )

    def _wait_ready(self) -> None:
        import psycopg  # noqa: PLC0415 (skipped above when missing)

        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self._process.poll() is not None:
                    log = self._read_log()
                    if "could not bind" in log or "already in use" in log:
                        raise _PortTaken(log) from None
                    raise RuntimeError(f"postgres exited with {self._process.returncode}:\n"
                                       f"{log}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not answer within {START_TIMEOUT} s:\n"
                                       f"{self._read_log()}") from None
                time.sleep(0.05)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)  # immediate shutdown, backends included
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                check=False, **self._child_options())
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"{os.path.basename(command[0])} failed "
                               f"({result.returncode}):\n{output}")

    def _child_options(self) -> _ChildOptions:
        """Where, as whom and with which environment the PostgreSQL programs run."""
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("PG")}
        options: _ChildOptions = {"cwd": self.directory, "env": environment}
        if self._user is not None:
            options |= {"user": self._user.pw_uid, "group": self._user.pw_gid,
                        "extra_groups": []}
            environment.update(HOME=self.directory, USER=self._user.pw_name,
                               LOGNAME=self._user.pw_name)
        return options

    def _read_log(self) -> str:
        try:
            return Path(self._log_path).read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database on the session server, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def postgres_server_factory() -> Iterator[Callable[[], PostgresServer]]:
    """Starts private servers on demand; all are stopped after the test."""
    started: list[PostgresServer] = []

    def start() -> PostgresServer:
        server = PostgresServer()
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
