"""The schema of the SQL stores, written once: each table, its columns with their type in each
dialect, and the history of versions that brought it to its current shape.

`HISTORY` is the one list of versions. Each entry adds tables and columns and says which
version it is in each dialect: SQLite counts one more (its ``PRAGMA user_version``), because
its first two versions predate the PostgreSQL store (0: messages keyed by fingerprint alone
and people by ``people_id`` alone; 1: keyed per conversation, as Crisp keys them).

How each database reaches the current version differs, and is read from here:

- PostgreSQL applies the versions it lacks in order (`postgres_migrations`: ``CREATE TABLE``
  and ``ALTER TABLE ... ADD COLUMN``), keeping the version reached in ``crisp_sync_schema``;
- SQLite cannot change a primary key in place: an older file has each table rebuilt to its
  current shape (`tables`), every row copied (`crisp_api.sync.sqlite_database`).

A table or column may exist in one dialect only (``only``): the lock rows of SQLite, the
leases of a PostgreSQL fleet, the ``replaced`` flag of rows JSONB could not hold as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True, slots=True)
class Type:
    """A column type as each dialect names it (None: the dialect has no column of it)."""

    sqlite: str | None
    postgres: str

    def named(self, dialect: Dialect) -> str:
        """The type's name in ``dialect``."""
        name = self.sqlite if dialect == "sqlite" else self.postgres
        if name is None:
            raise ValueError(f"{self} has no {dialect} type")
        return name


TEXT = Type("TEXT", "TEXT")
INTEGER = Type("INTEGER", "INTEGER")
"""An integer of 32 bits (a quota day, a pid)."""
BIGINT = Type("INTEGER", "BIGINT")
"""An integer of 64 bits (epoch ms, a fingerprint, a count): SQLite's integers are."""
REAL = Type("REAL", "DOUBLE PRECISION")
DOCUMENT = Type("TEXT", "JSONB")
"""A row as Crisp sent it: its JSON text in SQLite, a JSONB document in PostgreSQL."""
FLAG = Type("INTEGER", "BOOLEAN")
"""True or false: 1 or 0 in SQLite."""
INSTANT = Type(None, "TIMESTAMPTZ")
"""A time in PostgreSQL's clock (the leases)."""


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its name, type, whether it may be NULL and its default (a flag's default
    is false in both dialects' words)."""

    name: str
    type: Type
    not_null: bool = False
    default: bool | int | None = None
    only: Dialect | None = None

    def definition(self, dialect: Dialect, *, key: bool = False) -> str:
        """The column as ``CREATE TABLE`` or ``ADD COLUMN`` writes it (``key``: the table's
        one-column primary key)."""
        text = f"{self.name} {self.type.named(dialect)}"
        if key:
            text += " PRIMARY KEY"
        if self.not_null:
            text += " NOT NULL"
        if isinstance(self.default, bool):  # SQLite has no booleans: 0 and 1
            flag = int(self.default) if dialect == "sqlite" else str(self.default).upper()
            text += f" DEFAULT {flag}"
        elif self.default is not None:
            text += f" DEFAULT {self.default}"
        return text


@dataclass(frozen=True, slots=True)
class Table:
    """A table: its columns in order and its primary key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    only: Dialect | None = None

    def create(
        self, dialect: Dialect, *, name: str | None = None, if_not_exists: bool = False
    ) -> str:
        """``CREATE TABLE`` of this table's columns in ``dialect`` (under ``name`` if given:
        SQLite builds a table's new shape beside the old one)."""
        single = self.key if len(self.key) == 1 else ()
        lines = [column.definition(dialect, key=(column.name,) == single)
                 for column in self.columns if column.only in (None, dialect)]
        if not single:
            lines.append(f"PRIMARY KEY ({', '.join(self.key)})")
        exists = "IF NOT EXISTS " if if_not_exists else ""
        body = ",\n    ".join(lines)
        return f"CREATE TABLE {exists}{name or self.name} (\n    {body}\n)"


@dataclass(frozen=True, slots=True)
class Index:
    """An index of a table, on columns in order."""

    name: str
    table: str
    columns: tuple[str, ...]

    def create(self, *, if_not_exists: bool = False) -> str:
        exists = "IF NOT EXISTS " if if_not_exists else ""
        return f"CREATE INDEX {exists}{self.name} ON {self.table} ({', '.join(self.columns)})"


@dataclass(frozen=True, slots=True)
class Version:
    """One version of the schema: the tables, columns (by table) and indexes it adds, and
    its number in each dialect."""

    sqlite: int
    postgres: int
    tables: tuple[Table, ...] = ()
    columns: tuple[tuple[str, Column], ...] = ()
    indexes: tuple[Index, ...] = ()


def _documents(name: str, key: tuple[Column, ...], *more: Column) -> Table:
    """A table of rows kept as documents: ``key``, the columns ``more``, the document."""
    columns = (*key, *more, Column("data", DOCUMENT, not_null=True))
    return Table(name, columns, tuple(column.name for column in key))


_REPLACED = Column("replaced", FLAG, not_null=True, default=False, only="postgres")
"""Characters JSONB cannot hold were replaced in the row's document (`postgres_store`)."""

HISTORY: tuple[Version, ...] = (
    Version(
        sqlite=2, postgres=1,
        tables=(
            Table("conversations", (
                Column("session_id", TEXT),
                Column("website_id", TEXT, not_null=True),
                Column("updated_at", BIGINT),
                Column("data", DOCUMENT, not_null=True),
            ), ("session_id",)),
            Table("messages", (
                Column("session_id", TEXT, not_null=True),
                Column("fingerprint", BIGINT, not_null=True),
                Column("website_id", TEXT, not_null=True),
                Column("timestamp", BIGINT, not_null=True),
                Column("data", DOCUMENT, not_null=True),
                Column("from_event", FLAG, not_null=True, default=False),
            ), ("session_id", "fingerprint")),
            _documents("people", (Column("website_id", TEXT, not_null=True),
                                  Column("people_id", TEXT, not_null=True))),
            _documents("operators", (Column("website_id", TEXT, not_null=True),
                                     Column("user_id", TEXT, not_null=True))),
            Table("sync_state", (
                Column("website_id", TEXT),
                Column("checkpoint_ms", BIGINT),
                Column("people_listed_ms", BIGINT),
            ), ("website_id",)),
            Table("sync_locks", (
                Column("website_id", TEXT),
                Column("host", TEXT, not_null=True),
                Column("pid", INTEGER, not_null=True),
                Column("token", TEXT, not_null=True),
                Column("heartbeat_ms", BIGINT, not_null=True),
                Column("acquired_ms", BIGINT, not_null=True),
            ), ("website_id",), only="sqlite"),
            Table("sync_leases", (
                Column("website_id", TEXT),
                Column("owner", TEXT),
                Column("holder", TEXT),
                Column("lease_until", INSTANT),
                Column("claimed_at", INSTANT),
                Column("synced_at", INSTANT),
            ), ("website_id",), only="postgres"),
            Table("sync_workers", (
                Column("owner", TEXT),
                Column("holder", TEXT, not_null=True),
                Column("alive_until", INSTANT, not_null=True),
            ), ("owner",), only="postgres"),
        ),
        indexes=(
            Index("conversations_website", "conversations", ("website_id", "updated_at")),
            Index("messages_session", "messages", ("session_id", "timestamp")),
        ),
    ),
    Version(
        sqlite=3, postgres=2,
        columns=tuple((table, _REPLACED)
                      for table in ("conversations", "messages", "people", "operators")),
        tables=(
            Table("quarantine", (
                Column("website_id", TEXT, not_null=True),
                Column("kind", TEXT, not_null=True),
                Column("session_id", TEXT, not_null=True),
                Column("ident", TEXT, not_null=True),
                Column("raw", TEXT, not_null=True),
                Column("reason", TEXT, not_null=True),
                Column("quarantined_ms", BIGINT, not_null=True),
            ), ("website_id", "kind", "session_id", "ident")),
        ),
    ),
    Version(
        sqlite=4, postgres=3,
        columns=(("sync_state", Column("last_run_ms", BIGINT)),
                 ("sync_state", Column("credential", TEXT))),
        tables=(
            Table("quota_ledger", (
                Column("credential", TEXT, not_null=True),
                Column("day", INTEGER, not_null=True),
                Column("requests", BIGINT, not_null=True),
            ), ("credential", "day")),
            Table("allowance", (
                Column("credential", TEXT),
                Column("spent_until_ms", BIGINT),
                Column("learnt_rate", REAL),
                Column("daily_quota", BIGINT),
                Column("quota_reset", REAL, not_null=True, default=0),
            ), ("credential",)),
        ),
    ),
    Version(sqlite=5, postgres=4),  # the analysts' views (`crisp_api.sync.views`)
    Version(sqlite=6, postgres=5, columns=(("allowance", Column("reached_rate", REAL)),),
            indexes=(Index("conversations_stamp", "conversations", ("session_id", "updated_at")),)),
)
"""Every version, oldest first. Version 2 (SQLite) / 1 (PostgreSQL): the rows keyed as Crisp
keys them, messages knowing whether a live event stored them, and each dialect's way of
holding a website (SQLite's lock rows, PostgreSQL's leases). 3 / 2: rows that cannot be keyed
put aside in ``quarantine`` (and PostgreSQL's ``replaced`` flag). 4 / 3: the quota ledger,
each credential's allowance and each website's last complete run. 5 / 4: the analysts' views
(`crisp_api.sync.views`), which every migration drops first and creates again last. 6 / 5:
the rate a run's slow start reached without a refusal, kept with the allowance, and an index
that answers a listing page's stored ``updated_at`` without reading the conversations' rows
(a relisting read a table page per conversation)."""

SQLITE_VERSION = HISTORY[-1].sqlite
"""The version of the schema `tables` describes, as SQLite counts it."""
POSTGRES_VERSION = HISTORY[-1].postgres
"""The version of the schema `tables` describes, as PostgreSQL counts it."""


def tables(dialect: Dialect) -> tuple[Table, ...]:
    """The tables of the current schema in ``dialect``, each with every column it gained."""
    built: dict[str, Table] = {}
    for version in HISTORY:
        for table in version.tables:
            if table.only in (None, dialect):
                built[table.name] = table
        for name, column in version.columns:
            if column.only in (None, dialect):
                built[name] = replace(built[name], columns=(*built[name].columns, column))
    return tuple(
        replace(table, columns=tuple(c for c in table.columns if c.only in (None, dialect)))
        for table in built.values()
    )


def indexes() -> tuple[Index, ...]:
    """The indexes of the current schema (the same in both dialects)."""
    return tuple(index for version in HISTORY for index in version.indexes)


def postgres_migrations() -> tuple[tuple[str, ...], ...]:
    """The statements of each PostgreSQL version, in order: version N is reached by applying
    the first N entries.

    The first creates the tables and fails on a database holding tables of the same names
    that are not ours; each later one adds only what is missing (``IF NOT EXISTS``), so that
    applied over a database that has its additions, it changes nothing.
    """
    migrations = []
    for number, version in enumerate(HISTORY):
        again = number > 0
        statements = [
            f"ALTER TABLE {name} ADD COLUMN {'IF NOT EXISTS ' if again else ''}"
            + column.definition("postgres")
            for name, column in version.columns if column.only in (None, "postgres")
        ]
        statements += [table.create("postgres", if_not_exists=again)
                       for table in version.tables if table.only in (None, "postgres")]
        statements += [index.create(if_not_exists=again) for index in version.indexes]
        migrations.append(tuple(statements))
    return tuple(migrations)
