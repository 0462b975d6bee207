"""`PgDatabase`: one PostgreSQL database as the PostgreSQL store and its leases use it (psycopg 3
and psycopg_pool, ``[postgres]``): the connection pool, the schema's migrations, the statement
helpers and the mapping of errors to `StoreError`.

The schema (`crisp_api.sync.schema`) is created and migrated here: the versions a database
lacks are applied in order, each once, in one transaction under a transaction-scoped advisory
lock (so workers starting together do not race), and the version reached is kept in
``crisp_sync_schema``; the analysts' views (`crisp_api.sync.views`) are dropped before and
created again after. A database of a newer release is refused.

Errors name the database as ``user@host:port/dbname``: never its password, nor the row being
written (only the server's primary message is kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crisp_api.extras import install_hint
from crisp_api.sync import schema, views
from crisp_api.sync.sql_dialect import SqlDialect
from crisp_api.sync.store import StoreError, WebsiteLockedError

try:
    import psycopg
    import psycopg_pool
    from psycopg import conninfo, sql
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg_pool: "
        + install_hint("postgres")
    ) from missing

MIGRATIONS = schema.postgres_migrations()
"""The statements of each version: version N is reached by applying the first N entries."""
_MIGRATION_LOCK = 0x63726973  # any constant: one advisory lock for every migrating worker
POOL_WAIT_SECONDS = 5.0
"""How long a save or a reconciliation waits for a pooled connection (none free, or the
server unreachable) before failing with a transient `StoreError`: a few seconds, so an
outage shows at once instead of after psycopg_pool's 30 s."""

_PERMANENT_CLASSES = ("28", "3D", "42", "XX")
"""SQLSTATE classes a rerun cannot get past: refused credentials, no such database, a schema
or privilege problem, corruption."""
_PERMANENT_CODES = frozenset({"53100", "25006", "57P04", "2BP01"})
"""Disk full, a read-only server (a standby), a database dropped, an object of someone else's
depending on one a migration drops (a view built on the analysts' views)."""
_PERMANENT_REFUSALS = ("authentication failed", "does not exist", "pg_hba.conf")
"""What libpq says when the server refuses a connection for good (a wrong password, no such
database or role, not allowed by ``pg_hba.conf``): such errors carry no SQLSTATE."""


class PgDatabase(SqlDialect):
    """The PostgreSQL database at ``url``, migrated to the current schema, with a pool of
    ``pool_size`` connections at most (in autocommit) shared by threads.

    ``url`` is a ``postgresql://user:password@host:port/dbname`` URL (or a libpq connection
    string). Each connection is checked when taken from the pool, so connections that died
    with a server restart are replaced, not handed out.
    """

    mark = "%s"

    def __init__(self, url: str, *, pool_size: int, connect_timeout: float) -> None:
        self.name = _public_name(url)
        options: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout))}
        self._url, self._options = url, options
        with self.errors():
            with psycopg.connect(url, **options) as db:  # fails fast on a bad URL or password
                self._upgrade(db)
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_size, kwargs={**options, "autocommit": True},
                open=False, check=psycopg_pool.ConnectionPool.check_connection,
                timeout=POOL_WAIT_SECONDS, name="crisp-sync",
            )
            self._pool.open(wait=True, timeout=max(30.0, connect_timeout))

    def _upgrade(self, db: psycopg.Connection[Any]) -> None:
        """Apply the migrations this database lacks, in one transaction."""
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS crisp_sync_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM crisp_sync_schema").fetchone()
            version = 0 if row is None else int(row[0])
            latest = schema.POSTGRES_VERSION
            if version > latest:
                raise StoreError(
                    f"PostgreSQL database {self.name}: schema version {version} is newer than "
                    f"this release's ({latest}); upgrade crisp-api-next",
                    permanent=True,
                )
            if version < latest:
                for statement in (*views.drop_statements(), *(
                        statement for statements in MIGRATIONS[version:]
                        for statement in statements), *views.create_statements("postgres")):
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO crisp_sync_schema (version) VALUES (%s)", (latest,))
            elif version < latest:
                db.execute("UPDATE crisp_sync_schema SET version = %s", (latest,))

    @contextmanager
    def errors(self, operation: str = "a query") -> Iterator[None]:
        """Raise psycopg's and the pool's errors as `StoreError`, naming this database; and
        any other error (a value the driver refused, a bug) as a transient one naming
        ``operation``, never the row."""
        try:
            yield
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(
                f"PostgreSQL database {self.name}: no connection free or reachable ({exc})",
                permanent=False,
            ) from exc
        except psycopg.Error as exc:
            raise _store_error(self.name, exc) from exc
        except (StoreError, WebsiteLockedError):
            raise
        except Exception as exc:
            raise StoreError(
                f"PostgreSQL database {self.name}: {operation} failed ({type(exc).__name__})",
                permanent=False,
            ) from exc

    @contextmanager
    def transaction(self, operation: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside one transaction, committed if the block succeeds."""
        with (self.errors(operation), self._pool.connection() as db, db.transaction(),
              db.cursor() as cur):
            yield cur

    @contextmanager
    def statement(self, operation: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for statements atomic each on its own (the pool's connections are in
        autocommit): no BEGIN and COMMIT round trips, which cost a sync more CPU than the
        statement itself."""
        with self.errors(operation), self._pool.connection() as db, db.cursor() as cur:
            yield cur

    def ping(self, timeout: float) -> None:
        """Ask the database for a trivial answer, waiting at most ``timeout`` seconds for a
        pooled connection; `StoreError` if it cannot give one."""
        with self.errors(), self._pool.connection(timeout=timeout) as db:
            db.execute("SELECT 1")

    def listener(self, channel: str) -> Listener:
        """A connection of its own (not the pool's: it stays idle between waits) listening on
        ``channel``; `StoreError` if it cannot be opened."""
        with self.errors("listen for notifications"):
            db = psycopg.connect(self._url, **self._options, autocommit=True)
            try:
                db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:
                db.close()
                raise
        return Listener(self, db)

    def close(self) -> None:
        """Close the connections."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"<PgDatabase {self.name}>"


class Listener:
    """A connection LISTENing on one channel (`PgDatabase.listener`): `wait` returns on the
    first notification, delivered by PostgreSQL when the notifying transaction commits."""

    def __init__(self, database: PgDatabase, db: psycopg.Connection[Any]) -> None:
        self._database = database
        self._db = db

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a notification (one that came since the last wait counts
        at once); whether one came. `StoreError` if the connection fails."""
        with self._database.errors("wait for a notification"):
            return any(True for _ in self._db.notifies(timeout=seconds, stop_after=1))

    def close(self) -> None:
        """Close the connection (and with it the LISTEN)."""
        self._db.close()


def _public_name(url: str) -> str:
    """``user@host:port/dbname`` of a connection URL or string: no password, no options."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's reason quotes the part it could not parse, which may be the password.
        raise ValueError(
            "not a PostgreSQL URL or connection string "
            "(postgresql://user:password@host:port/dbname)"
        ) from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def _store_error(name: str, error: psycopg.Error) -> StoreError:
    """``error`` as a one-line `StoreError` naming the database, permanent by its SQLSTATE.

    Only the server's primary message is kept: its DETAIL and CONTEXT lines may quote the
    row being written (a message's text), which has no place in an error or a log."""
    primary = error.diag.message_primary if error.sqlstate is not None else None
    text = " ".join((primary or str(error)).split()) or type(error).__name__
    code = error.sqlstate
    permanent = code is not None and (code in _PERMANENT_CODES or code[:2] in _PERMANENT_CLASSES)
    if code is None and any(refusal in text for refusal in _PERMANENT_REFUSALS):
        permanent = True  # refused at connection time, before any SQLSTATE
    return StoreError(
        f"PostgreSQL database {name}: {text}" + (f" (SQLSTATE {code})" if code else ""),
        permanent=permanent,
    )
