"""`SqliteDatabase`: one SQLite file as the SQLite store and its locks use it (stdlib sqlite3).

One connection serialised by a lock: SQLite has one writer at a time anyway, and the sync's
time goes to the network, not here. Writes take the write lock up front (``BEGIN
IMMEDIATE``), so two transactions cannot deadlock; ``busy_timeout`` (seconds) is how long one
waits for another program's transaction before failing with a transient `StoreError`.

A thread may hold one transaction around many writes (`group`, the sync's group commit):
each `transaction` it opens inside is then a savepoint, atomic on its own, and the group is
committed once at its end.

The schema (`crisp_api.sync.schema`) carries its version in ``PRAGMA user_version``. A file
written by an older release is migrated in place, in one transaction, the first time it is
opened: each table whose shape differs is rebuilt to its current shape, every row kept, and
the analysts' views (`crisp_api.sync.views`) are dropped before and created again after.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from crisp_api.sync import schema, views
from crisp_api.sync.sql_dialect import SqlDialect
from crisp_api.sync.store import StoreError, WebsiteLockedError

_PERMANENT = frozenset(
    {
        "SQLITE_READONLY",
        "SQLITE_FULL",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_CANTOPEN",
        "SQLITE_PERM",
        "SQLITE_IOERR",
    }
)
"""Primary SQLite result codes a rerun cannot get past until someone acts."""
_ERROR_TEXTS = {
    "attempt to write a readonly database": "SQLITE_READONLY",
    "database or disk is full": "SQLITE_FULL",
    "database disk image is malformed": "SQLITE_CORRUPT",
    "file is not a database": "SQLITE_NOTADB",
    "unable to open database file": "SQLITE_CANTOPEN",
    "access permission denied": "SQLITE_PERM",
    "disk I/O error": "SQLITE_IOERR",
}
"""SQLite's own texts for those codes, for an error that does not carry its code name."""


class SqliteDatabase(SqlDialect):
    """The SQLite file at ``path``, opened, configured by ``configure`` (its pragmas) and
    migrated to the current schema; `StoreError` if it cannot be."""

    mark = "?"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float,
        configure: Callable[[sqlite3.Connection], None],
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._grouping = False
        """Whether a `group` holds the connection (read and set under ``_lock`` alone)."""
        with self.errors():
            self._db = sqlite3.connect(
                path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
        try:
            with self.errors():
                for attempt in _until_free(busy_timeout):
                    with attempt:
                        configure(self._db)
                        self._upgrade()
        except BaseException:
            self._db.close()
            raise

    def _upgrade(self) -> None:
        """Create the schema in a new database, or migrate an older one in one transaction."""
        db = self._db
        if _user_version(db) == schema.SQLITE_VERSION:
            return
        with _immediate(db):
            version = _user_version(db)  # another program may have upgraded it meanwhile
            if version > schema.SQLITE_VERSION:
                raise StoreError(
                    f"SQLite database {self.path}: schema version {version} is newer than "
                    f"this release's ({schema.SQLITE_VERSION}); upgrade crisp-api-next",
                    permanent=True,
                )
            if version < schema.SQLITE_VERSION:
                for statement in views.drop_statements():  # a rebuilt table breaks them
                    db.execute(statement)
                for table in schema.tables("sqlite"):
                    self._shape_table(table)
                for index in schema.indexes():
                    db.execute(index.create(if_not_exists=True))
                for statement in views.create_statements("sqlite"):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {schema.SQLITE_VERSION}")

    def _shape_table(self, table: schema.Table) -> None:
        """Create ``table``, or rebuild it if it has another shape, copying every row.

        The rebuild is SQLite's documented way to change a primary key: create the new
        table, copy the rows, drop the old one, rename the new one. Its indexes go with
        the old table and are recreated by the caller.
        """
        db, name = self._db, table.name
        old = _columns(db, name)
        if not old:
            db.execute(table.create("sqlite"))
            return
        staging = f"{name}_migrating"
        db.execute(table.create("sqlite", name=staging))
        new = _columns(db, staging)
        if old == new:
            db.execute(f"DROP TABLE {staging}")
            return
        if unknown := sorted(set(old) - set(new)):
            raise StoreError(
                f"SQLite database {self.path}: table {name} has columns this release does "
                f"not know ({', '.join(unknown)}); not migrating it, to lose nothing",
                permanent=True,
            )
        shared = ", ".join(column for column in new if column in old)
        db.execute(f"INSERT INTO {staging} ({shared}) SELECT {shared} FROM {name}")  # noqa: S608 - names of the schema
        db.execute(f"DROP TABLE {name}")
        db.execute(f"ALTER TABLE {staging} RENAME TO {name}")

    @contextmanager
    def errors(self, operation: str = "a query") -> Iterator[None]:
        """Raise SQLite's errors as `StoreError`, naming this database; and any other error
        (a value the driver refused, a bug) as a transient one naming ``operation``, never
        the row."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc
        except (StoreError, WebsiteLockedError):
            raise
        except Exception as exc:
            raise StoreError(
                f"SQLite database {self.path}: {operation} failed ({type(exc).__name__})",
                permanent=False,
            ) from exc

    @contextmanager
    def statement(self, operation: str) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone, outside any transaction (each statement
        commits on its own), its errors raised as `StoreError`."""
        with self.errors(operation), self._lock:
            yield self._db

    @contextmanager
    def transaction(self, operation: str) -> Iterator[sqlite3.Connection]:
        """The connection inside a write transaction, committed if the block succeeds; within
        this thread's `group`, a savepoint of it, released if the block succeeds and rolled
        back (the rest of the group kept) otherwise."""
        with self.statement(operation) as db:
            if self._grouping:  # the lock is this thread's: so is the group
                with _savepoint(self.path, db):
                    yield db
            else:
                with _immediate(db):
                    yield db

    @contextmanager
    def group(self, operation: str) -> Iterator[None]:
        """One write transaction around every `transaction` this thread opens in the block,
        committed once at its end (other threads wait for the connection meanwhile); if SQLite
        rolled it back on the way (a full disk, an I/O error), the block ends in `StoreError`:
        nothing of it is saved."""
        with self.statement(operation) as db, _immediate(db):
            self._grouping = True
            try:
                yield
                if not db.in_transaction:
                    raise _rolled_back(self.path)
            finally:
                self._grouping = False

    def close(self) -> None:
        """Close the connection."""
        with self.statement("close") as db:
            db.close()


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying another connection holds the lock it needs."""
    return isinstance(exc, sqlite3.Error) and _primary(_code_name(exc)) == "SQLITE_BUSY"


def _until_free(seconds: float) -> Retrying:
    """Attempts at opening the file, again while SQLite answers SQLITE_BUSY, for ``seconds``.

    Some lock changes are refused at once, without SQLite's busy handler: switching to WAL
    while another program writes in rollback-journal mode (or switches too: two crisp-sync
    processes starting on one new file). Opening waits for those as a write waits for
    another program's transaction, spaced 10 ms, doubling to 200 ms; the last error is raised
    after ``seconds``."""
    return Retrying(retry=retry_if_exception(_busy), stop=stop_after_delay(seconds),
                    wait=wait_exponential(multiplier=0.01, max=0.2), reraise=True)


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A ``BEGIN IMMEDIATE`` transaction (the write lock up front, so it cannot deadlock),
    committed if the block succeeds and rolled back otherwise."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise


@contextmanager
def _savepoint(path: str, db: sqlite3.Connection) -> Iterator[None]:
    """A savepoint of the open transaction, released if the block succeeds and rolled back
    otherwise (the transaction goes on); `StoreError` if SQLite already rolled back the
    transaction it belonged to."""
    if not db.in_transaction:
        raise _rolled_back(path)
    db.execute("SAVEPOINT save")
    try:
        yield
        db.execute("RELEASE save")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back the whole transaction already
            db.execute("ROLLBACK TO save")
            db.execute("RELEASE save")
        raise


def _rolled_back(path: str) -> StoreError:
    return StoreError(f"SQLite database {path}: SQLite rolled back a group of saves after a "
                      "failure in it; none of them is stored", permanent=False)


def _user_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _columns(db: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool, int]]:
    """Each column of ``table`` (none if it does not exist): its type, NOT NULL and place
    in the primary key, which is what tells an older schema from the current one."""
    return {
        name: (kind.upper(), bool(not_null), key_place)
        for _, name, kind, not_null, _, key_place in db.execute(f"PRAGMA table_info({table})")
    }


def _store_error(path: str, error: sqlite3.Error) -> StoreError:
    """``error`` as a one-line `StoreError` naming the database, permanent or not by its code."""
    name = _code_name(error)
    return StoreError(
        f"SQLite database {path}: {_text(error)}" + (f" ({name})" if name else ""),
        permanent=_primary(name) in _PERMANENT,
    )


def _text(error: sqlite3.Error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _code_name(error: sqlite3.Error) -> str | None:
    """SQLite's name of ``error``'s result code (``SQLITE_IOERR_READ``), or the one its text
    stands for; None if neither tells."""
    name: str | None = getattr(error, "sqlite_errorname", None)
    return name or _ERROR_TEXTS.get(_text(error))


def _primary(name: str | None) -> str | None:
    """The primary result code of a code name: ``SQLITE_IOERR`` for ``SQLITE_IOERR_READ``."""
    return "_".join(name.split("_")[:2]) if name else None
