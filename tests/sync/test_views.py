"""The analysts' views (`crisp_api.sync.views`) on SQLite and PostgreSQL, against the fake.

The fake is synced into each store; every view row is compared with the fake's ground truth
(odd rows included: those put aside are in no view, values the columns cannot show are
flagged ``replaced``); the example queries of docs/sync/analysts.md run on their database and
their answers are checked; a database of the previous schema version gains the views, and a
later version's migration recreates them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync import schema, views
from crisp_api.sync.engine import sync_website
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import StoreError
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import fast_client
from tests.sync.test_schema import POSTGRES_MIGRATIONS, SQLITE_INDEXES, SQLITE_V4

pytest_plugins = ["tests.postgres_server"]

ANALYSTS = Path(__file__).parents[2] / "docs" / "sync" / "analysts.md"
SURROGATE = "a lone \ud800 surrogate"
NUL = "a nul \u0000 inside"


@dataclass
class Database:
    """One database of a store: its dialect, how to open the store, and a reader."""

    dialect: schema.Dialect
    db: str
    open: Callable[[], Any]
    select: Callable[[str], list[tuple[Any, ...]]]


def _sqlite_select(path: Path) -> Callable[[str], list[tuple[Any, ...]]]:
    def select(sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(path)
        db.text_factory = lambda data: data.decode("utf-8", "replace")
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    return select


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        path = tmp_path / "crisp.sqlite3"
        return Database("sqlite", str(path), lambda: SQLiteStore(path), _sqlite_select(path))
    url: str = request.getfixturevalue("postgres_url")
    import psycopg  # noqa: PLC0415 - optional extra

    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    def select(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as db:
            return db.execute(sql).fetchall()  # type: ignore[arg-type]
    return Database("postgres", url, lambda: PostgresStore(url, pool_size=4), select)


def synced(fake: FakeCrisp, database: Database) -> None:
    with database.open() as store:
        assert sync_website(fast_client(fake), fake.website_id, store, workers=4).complete


def rows_of(database: Database, name: str) -> list[dict[str, Any]]:
    """The view's rows, its JSON columns decoded (psycopg decodes JSONB itself)."""
    view = views.view(name)
    found = database.select(f"SELECT {', '.join(view.columns)} FROM {name}")
    decode = {field.name for field in view.fields
              if field.kind == "json" and database.dialect == "sqlite"}
    return [{column: json.loads(value) if column in decode and value is not None else value
             for column, value in zip(view.columns, row, strict=True)} for row in found]


def milliseconds(value: Any) -> int | None:
    """A view's timestamp (ISO text in SQLite, a datetime in PostgreSQL) as epoch ms."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert moment.utcoffset().total_seconds() == 0
    return round(moment.timestamp() * 1000)


def dig(row: dict[str, Any], *path: str) -> Any:
    for key in path:
        row = row.get(key) if isinstance(row, dict) else None  # type: ignore[assignment]
    return row


def typed(value: Any, kind: type) -> Any:
    """``value`` if of ``kind`` (an integer within 64 bits, not a boolean), else None."""
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)
                        or not -(2**63) <= value < 2**63):
        return None
    return value if isinstance(value, kind) else None


def time_of(value: Any) -> int | None:
    value = typed(value, int)
    return value if value is not None and 0 < value < 253_402_300_800_000 else None


def expected_conversation(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("meta", {})
    return {
        "session_id": row["session_id"], "people_id": typed(row.get("people_id"), str),
        "inbox_id": typed(row.get("inbox_id"), str),
        "state": row["state"], "nickname": typed(meta.get("nickname"), str),
        "email": typed(meta.get("email"), str), "phone": typed(meta.get("phone"), str),
        "subject": typed(meta.get("subject"), str), "origin": typed(meta.get("origin"), str),
        "segments": meta.get("segments"),
        "assigned_operator_id": typed(dig(row, "assigned", "user_id"), str),
        "is_verified": typed(row.get("is_verified"), bool),
        "is_blocked": typed(row.get("is_blocked"), bool),
        "availability": typed(row.get("availability"), str),
        "unread_operator": typed(dig(row, "unread", "operator"), int),
        "unread_visitor": typed(dig(row, "unread", "visitor"), int),
        "last_message": typed(row.get("last_message"), str),
        "last_message_type": typed(dig(row, "preview_message", "type"), str),
        "last_message_sender": typed(dig(row, "preview_message", "from"), str),
        "created_at": time_of(row["created_at"]), "updated_at": time_of(row["updated_at"]),
        "waiting_since": time_of(row.get("waiting_since")), "replaced": False,
    }


def seen_conversation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{name: value for name, value in row.items() if name != "website_id"},
        **{name: None if row[name] is None else bool(row[name])
           for name in ("is_verified", "is_blocked", "replaced")},
        **{name: milliseconds(row[name])
           for name in ("created_at", "updated_at", "waiting_since")},
    }


def expected_message(row: dict[str, Any], replaced: bool) -> dict[str, Any]:
    content = row["content"]
    return {
        "session_id": row["session_id"], "fingerprint": row["fingerprint"],
        "type": row["type"], "sender": row["from"], "origin": row["origin"],
        "content": content if isinstance(content, str) else None, "content_json": content,
        "user_id": dig(row, "user", "user_id"), "user_nickname": dig(row, "user", "nickname"),
        "timestamp": row["timestamp"], "read": row["read"], "delivered": row["delivered"],
        "edited": row.get("edited") is True, "automated": row.get("automated") is True,
        "from_event": False, "replaced": replaced,
    }


def seen_message(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{name: value for name, value in row.items() if name != "website_id"},
        "timestamp": milliseconds(row["timestamp"]),
        **{name: bool(row[name]) for name in ("edited", "automated", "from_event", "replaced")},
    }


def test_the_views_show_the_fakes_rows_the_odd_ones_flagged_or_left_out(
    database: Database,
) -> None:
    with FakeCrisp(conversations=12, messages=6, people=5, seed=41) as fake:
        first, second, third = [c["session_id"] for c in fake.conversations()][:3]
        fake.edit_message(first, fake.messages(first)[-1]["fingerprint"], "edited text")
        lossy = {fake.add_odd_message(first, {}, content=text)["fingerprint"]
                 for text in (SURROGATE, NUL)}
        fake.add_odd_message(second, {"fingerprint": 2**64})  # put aside
        fake.add_odd_message(second, {"unread": "x", "edited": "yes", "type": 5})
        fake.serve_conversation_over(third, {"updated_at": "yesterday"})  # put aside
        fake.serve_conversation_over(second, {"unread": {"operator": 2**70, "visitor": 1.5},
                                              "created_at": -5, "is_verified": "no",
                                              "inbox_id": "inbox-1"})
        synced(fake, database)
        truth = fake.ground_truth()
        with fake._world.lock:
            people = list(fake._world.websites[fake.website_id].people.values())

    assert {row["website_id"] for name in views.NAMES for row in rows_of(database, name)} == {
        fake.website_id}

    conversations = {row["session_id"]: seen_conversation(row)
                     for row in rows_of(database, "conversations_v")}
    assert third not in conversations
    odd = conversations[second]
    assert (odd["unread_operator"], odd["unread_visitor"], odd["created_at"],
            odd["is_verified"]) == (None, None, None, None)
    expected = {session_id: expected_conversation(t.conversation)
                for session_id, t in truth.items() if session_id != third}
    # The first conversation's last message (its excerpt) is the one holding U+0000.
    assert conversations[first].pop("last_message") != expected[first].pop("last_message")
    expected[first]["replaced"] = True
    assert conversations == expected

    messages = {(row["session_id"], row["fingerprint"]): seen_message(row)
                for row in rows_of(database, "messages_v")}
    stored = [m for t in truth.values() for m in t.messages if m["fingerprint"] != 2**64]
    assert len(messages) == len(stored)
    flagged = {fingerprint for (_, fingerprint), row in messages.items() if row["replaced"]}
    assert flagged == lossy
    for message in stored:
        key = (message["session_id"], message["fingerprint"])
        seen, expected = messages[key], expected_message(message, key[1] in lossy)
        if key[1] in lossy:  # the document keeps it; the text columns could not
            assert seen["content"] != message["content"]
            seen, expected = ({k: v for k, v in row.items()
                               if k not in ("content", "content_json")}
                              for row in (seen, expected))
        if message["type"] == 5:
            expected["type"], expected["edited"] = None, False
        assert seen == expected, key
    assert sum(row["edited"] for row in messages.values()) == 1

    assert sorted(
        (row["people_id"], row["email"], row["nickname"], row["segments"],
         row["score"], milliseconds(row["created_at"]), milliseconds(row["updated_at"]),
         milliseconds(row["last_active_at"]), bool(row["replaced"]))
        for row in rows_of(database, "people_v")
    ) == sorted(
        (p["people_id"], p["email"], p["person"]["nickname"], p["segments"], p["score"],
         p["created_at"], p["updated_at"], p["active"]["last"], False)
        for p in people
    )


# The example queries of docs/sync/analysts.md ----------------------------------------------

_TITLE = re.compile(r"^-- (?P<title>.+) \((?P<dialect>SQLite|PostgreSQL)\)$")


def example_queries() -> dict[tuple[str, schema.Dialect], str]:
    """Every ```sql block of the analysts' page, by its first line's title and dialect."""
    found: dict[tuple[str, schema.Dialect], str] = {}
    for block in re.findall(r"```sql\n(.*?)```", ANALYSTS.read_text(), re.DOTALL):
        title = _TITLE.match(block.splitlines()[0])
        assert title is not None, block
        dialect: schema.Dialect = "sqlite" if title["dialect"] == "SQLite" else "postgres"
        found[title["title"], dialect] = block
    return found


def test_the_documented_queries_come_for_both_databases() -> None:
    queries = example_queries()
    titles = {title for title, _ in queries}
    assert len(titles) >= 4
    assert set(queries) == {(title, d) for title in titles for d in ("sqlite", "postgres")}


def first_responses(truth: dict[str, Any]) -> list[float]:
    """Seconds from each conversation's first visitor message to the first operator message
    (not a note) after it."""
    found = []
    for t in truth.values():
        asked = min((m["timestamp"] for m in t.messages if m["from"] == "user"), default=None)
        answers = [m["timestamp"] for m in t.messages if m["from"] == "operator"
                   and m["type"] != "note" and asked is not None and m["timestamp"] > asked]
        if answers:
            found.append((min(answers) - asked) / 1000)
    return found


def test_the_documented_queries_answer_what_the_fake_holds(database: Database) -> None:
    with FakeCrisp(conversations=40, messages=8, seed=42) as fake:
        synced(fake, database)
        truth = fake.ground_truth()
    queries = {title: sql for (title, dialect), sql in example_queries().items()
               if dialect == database.dialect}
    answers = {title: database.select(sql) for title, sql in queries.items()}
    assert answers.pop("rows with replaced values") == []
    assert all(answers.values())

    days = Counter(datetime.fromtimestamp(t.conversation["created_at"] / 1000, UTC).date()
                   for t in truth.values())
    assert [(str(day), count) for day, count in answers["conversations per day"]] == sorted(
        (str(day), count) for day, count in days.items())

    [(median,)] = answers["median first response time"]
    assert float(median) == pytest.approx(statistics.median(first_responses(truth)), abs=0.01)

    operators = Counter((m["user"]["user_id"], m["user"]["nickname"])
                        for t in truth.values() for m in t.messages if m["from"] == "operator")
    assert answers["messages per operator"] == sorted(
        ((user_id, nickname, count) for (user_id, nickname), count in operators.items()),
        key=lambda row: (-row[2], row[0]))


# Migrations --------------------------------------------------------------------------------


def view_names(database: Database) -> set[str]:
    sql = ("SELECT name FROM sqlite_master WHERE type = 'view'" if database.dialect == "sqlite"
           else "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'")
    return {name for (name,) in database.select(sql)}


@pytest.fixture
def previous_version(database: Database) -> Database:
    """The database at the schema version before the views, with a conversation in it."""
    row = json.dumps({"session_id": "s1", "state": "resolved", "meta": {"nickname": "Ann"}})
    if database.dialect == "sqlite":
        db = sqlite3.connect(database.db)
        for statement in (*SQLITE_V4.values(), *SQLITE_INDEXES):
            db.execute(statement)
        db.execute("INSERT INTO conversations VALUES ('s1', 'w', 5, ?)", (row,))
        db.execute("PRAGMA user_version = 4")
        db.commit()
        db.close()
    else:
        import psycopg  # noqa: PLC0415 - optional extra

        with psycopg.connect(database.db) as db:
            for statements in POSTGRES_MIGRATIONS:
                for statement in statements:
                    db.execute(statement)  # type: ignore[arg-type]
            db.execute("CREATE TABLE crisp_sync_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO crisp_sync_schema VALUES (3)")
            db.execute("INSERT INTO conversations (session_id, website_id, updated_at, data)"
                       " VALUES ('s1', 'w', 5, %s)", (row,))
    assert view_names(database) == set()
    return database


def test_a_database_of_the_previous_version_gains_the_views(previous_version: Database) -> None:
    with previous_version.open():
        pass
    assert view_names(previous_version) == set(views.NAMES)
    assert previous_version.select(
        "SELECT session_id, state, nickname FROM conversations_v") == [("s1", "resolved", "Ann")]


def set_version(database: Database, version: int, *statements: str) -> None:
    if database.dialect == "sqlite":
        db = sqlite3.connect(database.db)
        for statement in statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
        db.close()
        return
    import psycopg  # noqa: PLC0415 - optional extra

    with psycopg.connect(database.db) as db:
        for statement in statements:
            db.execute(statement)  # type: ignore[arg-type]
        db.execute("UPDATE crisp_sync_schema SET version = %s", (version,))


def test_a_migration_recreates_the_views_as_the_release_defines_them(
    database: Database,
) -> None:
    latest = schema.SQLITE_VERSION if database.dialect == "sqlite" else schema.POSTGRES_VERSION
    with database.open():
        pass
    # A database the previous release migrated, whose view had another definition then.
    set_version(database, latest - 1, "DROP VIEW messages_v",
                "CREATE VIEW messages_v AS SELECT session_id FROM messages")
    with database.open():
        pass
    assert view_names(database) == set(views.NAMES)
    names = ("SELECT name FROM pragma_table_info('messages_v')" if database.dialect == "sqlite"
             else "SELECT column_name FROM information_schema.columns"
                  " WHERE table_name = 'messages_v' ORDER BY ordinal_position")
    assert [name for (name,) in database.select(names)] == list(views.view("messages_v").columns)


def test_a_postgresql_view_of_yours_on_them_stops_the_upgrade_and_is_kept(
    postgres_url: str,
) -> None:
    import psycopg  # noqa: PLC0415 - optional extra

    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    PostgresStore(postgres_url, pool_size=1).close()
    with psycopg.connect(postgres_url) as db:
        db.execute("CREATE VIEW mine AS SELECT session_id FROM conversations_v")
        db.execute("UPDATE crisp_sync_schema SET version = version - 1")
    with pytest.raises(StoreError, match="cannot drop view conversations_v") as raised:
        PostgresStore(postgres_url, pool_size=1)
    assert raised.value.permanent
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM mine").fetchone() == (0,)
