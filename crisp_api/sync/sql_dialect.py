"""`SqlDialect`: what the SQL a store shares needs of one database, and nothing more.

A store holds its database object (`crisp_api.sync.sqlite_database.SqliteDatabase`,
`crisp_api.sync.postgres_database.PgDatabase`) and hands it to the SQL both stores share
(`crisp_api.sync.sql_store`): that SQL writes its statements with the dialect's placeholder
and upsert, runs them through the dialect's transactions, and gets the database's errors as
`crisp_api.sync.store.StoreError`. What one database does its own way (SQLite's batched
document compare, PostgreSQL's ``unnest`` arrays) stays in its store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol


class Result(Protocol):
    """What a statement leaves to read: the rows it touched, the rows it selected."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class Cursor(Protocol):
    """What the shared SQL runs statements on (a psycopg cursor; a sqlite3 connection)."""

    def execute(self, sql: str, values: Sequence[Any], /) -> Result: ...

    def executemany(self, sql: str, values: Iterable[Sequence[Any]], /) -> object: ...


Statement = tuple[str, tuple[Any, ...]]
"""A statement and its values."""


class SqlDialect(ABC):
    """One database as the shared SQL sees it: its placeholder (``mark``), an upsert written
    with it, a transaction, a single statement, and its errors mapped to `StoreError`.

    Every method is safe to call from threads."""

    mark: ClassVar[str]
    """The placeholder of a value in a statement."""

    @abstractmethod
    def errors(self, operation: str = "a query") -> AbstractContextManager[None]:
        """Raise the database's errors as `StoreError` naming the database, permanent when a
        rerun cannot help; and any other error (a value the driver refused, a bug) as a
        transient one naming ``operation``, never the row."""

    @abstractmethod
    def transaction(self, operation: str) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction, committed if the block succeeds and rolled back
        otherwise; errors mapped (`errors`)."""

    @abstractmethod
    def statement(self, operation: str) -> AbstractContextManager[Cursor]:
        """A cursor for statements each atomic on its own (no transaction around them: what
        one statement reads or writes needs none); errors mapped (`errors`)."""

    def upsert(
        self,
        table: str,
        keys: Sequence[str],
        columns: Sequence[str],
        *,
        assign: Mapping[str, str] | None = None,
    ) -> str:
        """An ``INSERT`` of one row (``keys`` then ``columns``, a placeholder each) that updates
        the row already under its key instead: each of ``columns`` to its new value, or as
        ``assign`` says (an expression by column; ``excluded.<column>`` is the new value)."""
        names = (*keys, *columns)
        assigned = assign if assign is not None else {
            name: f"excluded.{name}" for name in columns
        }
        return (
            f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 - names of the schema
            f"VALUES ({', '.join([self.mark] * len(names))}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            + ", ".join(f"{name} = {expression}" for name, expression in assigned.items())
        )
