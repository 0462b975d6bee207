"""The analysts' views: each stored row's main fields as plain columns, in both databases.

The tables keep every row as Crisp sent it, one JSON document each (`crisp_api.sync.schema`).
The views ``conversations_v``, ``messages_v`` and ``people_v`` put the fields an analyst
queries first into typed columns: text, integers, booleans, timestamps and JSON (a list of
segments, a message's structured content). Each `View` here is written once and becomes the
SQL of either dialect:

- a *timestamp* is Crisp's epoch milliseconds as a time: ``TIMESTAMPTZ`` in PostgreSQL, an
  ISO 8601 text in UTC in SQLite (``2024-05-01T09:30:00.250Z``, which SQLite's date functions
  read);
- a *boolean* is ``BOOLEAN`` in PostgreSQL, 1 or 0 in SQLite;
- *json* is ``JSONB`` in PostgreSQL, JSON text in SQLite.

A field that is absent, or of another JSON type than its column's (an odd row), is NULL: a
query over the views never fails on a row's data. Rows put aside in ``quarantine`` are in no
table, so in no view. ``replaced`` is true for a row a value of which had to be replaced
(PostgreSQL: characters JSONB cannot hold, in the stored document; SQLite keeps the document
exact, but its text columns cannot show U+0000, which ends a text there, nor a lone
surrogate, which is not UTF-8; both are flagged): ``data`` keeps the whole row.

The databases create the views when they reach the current schema version, and drop every
view named here before they migrate (`drop_statements`), then create them again
(`create_statements`): a later version that changes a table or a view recreates the views.
A change to a view therefore comes with a new version in `crisp_api.sync.schema.HISTORY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crisp_api.sync.schema import Dialect

Kind = Literal["text", "integer", "boolean", "flag", "timestamp", "json"]
"""What a view column holds (its SQL type differs by dialect: see the module docstring); a
*flag* is a boolean that Crisp sends only when true: false when absent."""

_LATEST_MS = 253_402_300_799_999
"""The last millisecond of the year 9999: a time beyond it, or not after 1970 (Crisp's 0 is
"never", as in a ``waiting_since`` of a visitor not waiting), is NULL."""


@dataclass(frozen=True, slots=True)
class Field:
    """A view column: its name, its kind, and where it comes from: a column of the table
    (``column``) or a field of the row's document (``path``, its keys from the top)."""

    name: str
    kind: Kind
    path: tuple[str, ...] = ()
    column: str | None = None

    def expression(self, dialect: Dialect) -> str:
        """The column's SQL expression in ``dialect``."""
        if self.column is not None:
            return _from_column(self.column, self.kind, dialect)
        return (_sqlite if dialect == "sqlite" else _postgres)(self.path, self.kind)


@dataclass(frozen=True, slots=True)
class View:
    """A view of one table: its name, the table and its columns in order."""

    name: str
    table: str
    fields: tuple[Field, ...]

    def create(self, dialect: Dialect) -> str:
        """``CREATE VIEW`` of this view in ``dialect``."""
        columns = ",\n    ".join(
            f"{field.expression(dialect)} AS {field.name}" for field in self.fields)
        return f"CREATE VIEW {self.name} AS SELECT\n    {columns}\nFROM {self.table}"

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of its columns, in order."""
        return tuple(field.name for field in self.fields)


def _text(name: str, *path: str) -> Field:
    return Field(name, "text", path)


def _key(name: str, kind: Kind = "text") -> Field:
    return Field(name, kind, column=name)


_REPLACED = Field("replaced", "boolean", column="replaced")

VIEWS: tuple[View, ...] = (
    View("conversations_v", "conversations", (
        _key("website_id"),
        _key("session_id"),
        _text("people_id", "people_id"),
        _text("inbox_id", "inbox_id"),
        _text("state", "state"),
        _text("nickname", "meta", "nickname"),
        _text("email", "meta", "email"),
        _text("phone", "meta", "phone"),
        _text("subject", "meta", "subject"),
        _text("origin", "meta", "origin"),
        Field("segments", "json", ("meta", "segments")),
        _text("assigned_operator_id", "assigned", "user_id"),
        Field("is_verified", "boolean", ("is_verified",)),
        Field("is_blocked", "boolean", ("is_blocked",)),
        _text("availability", "availability"),
        Field("unread_operator", "integer", ("unread", "operator")),
        Field("unread_visitor", "integer", ("unread", "visitor")),
        _text("last_message", "last_message"),
        _text("last_message_type", "preview_message", "type"),
        _text("last_message_sender", "preview_message", "from"),
        Field("created_at", "timestamp", ("created_at",)),
        Field("updated_at", "timestamp", column="updated_at"),
        Field("waiting_since", "timestamp", ("waiting_since",)),
        _REPLACED,
    )),
    View("messages_v", "messages", (
        _key("website_id"),
        _key("session_id"),
        _key("fingerprint", "integer"),
        _text("type", "type"),
        _text("sender", "from"),
        _text("origin", "origin"),
        _text("content", "content"),
        Field("content_json", "json", ("content",)),
        _text("user_id", "user", "user_id"),
        _text("user_nickname", "user", "nickname"),
        Field("timestamp", "timestamp", column="timestamp"),
        _text("read", "read"),
        _text("delivered", "delivered"),
        Field("edited", "flag", ("edited",)),
        Field("automated", "flag", ("automated",)),
        Field("from_event", "boolean", column="from_event"),
        _REPLACED,
    )),
    View("people_v", "people", (
        _key("website_id"),
        _key("people_id"),
        _text("email", "email"),
        _text("nickname", "person", "nickname"),
        _text("phone", "person", "phone"),
        _text("company_name", "company", "name"),
        Field("segments", "json", ("segments",)),
        Field("score", "integer", ("score",)),
        Field("last_active_at", "timestamp", ("active", "last")),
        Field("created_at", "timestamp", ("created_at",)),
        Field("updated_at", "timestamp", ("updated_at",)),
        _REPLACED,
    )),
)
"""Every view. Columns named after Crisp's fields, but ``sender`` for a message's ``from``
(a word SQL reserves) and ``content`` (the text of a text message or a note) beside
``content_json`` (the content whatever its type, as JSON)."""

NAMES = tuple(view.name for view in VIEWS)
"""The names of the views, in order."""


def view(name: str) -> View:
    """The view named ``name``; `KeyError` if there is none."""
    for found in VIEWS:
        if found.name == name:
            return found
    raise KeyError(name)


def drop_statements() -> tuple[str, ...]:
    """``DROP VIEW IF EXISTS`` of every view, before a migration changes the tables (a view
    someone built on them makes PostgreSQL refuse: nothing of theirs is dropped)."""
    return tuple(f"DROP VIEW IF EXISTS {name}" for name in NAMES)


def create_statements(dialect: Dialect) -> tuple[str, ...]:
    """``CREATE VIEW`` of every view in ``dialect``, once the tables are current."""
    return tuple(found.create(dialect) for found in VIEWS)


# The expressions -----------------------------------------------------------------------------


def _from_column(column: str, kind: Kind, dialect: Dialect) -> str:
    """A column of the table: a time from its epoch milliseconds; SQLite's rows never have
    anything replaced in their document, so its ``replaced`` is computed (`_sqlite_lossy`)."""
    if kind == "timestamp":
        return _time(column, dialect)
    if column == "replaced" and dialect == "sqlite":
        return _sqlite_lossy()
    return column


def _time(milliseconds: str, dialect: Dialect) -> str:
    """Epoch milliseconds as a time (NULL outside 1970 to 9999, and for 0)."""
    within = f"{milliseconds} BETWEEN 1 AND {_LATEST_MS}"
    if dialect == "sqlite":
        return (f"CASE WHEN {within} THEN "
                f"strftime('%Y-%m-%dT%H:%M:%fZ', {milliseconds} / 1000.0, 'unixepoch') END")
    return f"CASE WHEN {within} THEN to_timestamp({milliseconds} / 1000.0) END"


def _sqlite(path: tuple[str, ...], kind: Kind) -> str:
    """A document field in SQLite (``json_type`` says which JSON type it is; NULL if absent)."""
    where = "'$." + ".".join(path) + "'"
    of = f"json_type(data, {where})"
    value = f"json_extract(data, {where})"
    if kind == "text":
        return f"CASE WHEN {of} = 'text' THEN {value} END"
    if kind in ("boolean", "flag"):
        absent = " ELSE 0" if kind == "flag" else ""
        return f"CASE {of} WHEN 'true' THEN 1 WHEN 'false' THEN 0{absent} END"
    integer = f"CASE WHEN {of} = 'integer' AND typeof({value}) = 'integer' THEN {value} END"
    if kind == "integer":
        return integer
    if kind == "timestamp":
        return _time(f"({integer})", "sqlite")
    return (f"CASE {of} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"WHEN 'null' THEN 'null' WHEN 'object' THEN {value} WHEN 'array' THEN {value} "
            f"ELSE json_quote({value}) END")


def _sqlite_lossy() -> str:
    """Whether SQLite's text columns may not show a value of the row as it is: its document
    holds an escaped U+0000 or a lone surrogate (``\\u0000``, ``\\ud800``...; an escaped
    backslash followed by such letters is flagged too: a flag too many, never one missing)."""
    return (r"(instr(data, '\u0000') > 0 OR data GLOB '*\u[dD][89abcdefABCDEF]*')")


def _postgres(path: tuple[str, ...], kind: Kind) -> str:
    """A document field in PostgreSQL (``jsonb_typeof`` says which JSON type it is)."""
    node = "data #> '{" + ",".join(path) + "}'"
    of = f"jsonb_typeof({node})"
    text = "data #>> '{" + ",".join(path) + "}'"
    if kind == "text":
        return f"CASE WHEN {of} = 'string' THEN {text} END"
    if kind in ("boolean", "flag"):
        absent = " ELSE FALSE" if kind == "flag" else ""
        return f"CASE WHEN {of} = 'boolean' THEN ({text})::boolean{absent} END"
    # an integer that BIGINT holds: at most 18 digits, as JSONB writes numbers
    integer = (f"CASE WHEN {of} = 'number' AND {text} ~ '^-?[0-9]{{1,18}}$' "
               f"THEN ({text})::bigint END")
    if kind == "integer":
        return integer
    if kind == "timestamp":
        return _time(f"({integer})", "postgres")
    return node
