"""Section 6, store throughput: the ways psycopg 3 offers to write a conversation in bulk, raced.

Every contender saves the same seeded conversations (`fleet.conversations_to_save`) from the
same threads into a fresh database of the store's schema, with what `PostgresStore` promises
of a save (its messages upserted, unchanged rows not rewritten and told from added and updated
ones, the span's stored messages Crisp no longer has deleted, messages stored from live events
counted as read, the conversation row upserted; all or nothing), through a pool made as the
store makes its own (`PgDatabase`): first inserts, then the very same rows again.

- **one statement** is `PostgresStore.save_conversation` itself: one statement in autocommit,
  the messages as binary arrays through ``unnest``;
- **statements in a transaction**: ``BEGIN``, the ``unnest`` upsert, the removal, the
  conversation, ``COMMIT``: a round trip each (what the store did before);
- **pipeline mode**: the same statements sent in one pipeline (`psycopg.Connection.pipeline`);
- **executemany**: one ``INSERT ... ON CONFLICT`` per message, which psycopg 3 sends in a
  pipeline, then the removal and the conversation;
- **COPY**: the messages copied into a temporary table (``ON COMMIT DELETE ROWS``), then one
  ``INSERT ... SELECT ... ON CONFLICT``, the removal and the conversation.

The contenders take turns in rounds, the order rotating every round, each round on fresh
databases; a contender's rows/s is its median over rounds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.stats import median, paired_ratios
from crisp_api.json_codec import canonical
from crisp_api.sync import MessageSpan

if TYPE_CHECKING:
    import psycopg

    from benchmarks.fleet import Batch, Databases
    from crisp_api.sync.postgres_database import PgDatabase

STORE = "one statement (the store's)"
TRANSACTION = "statements in a transaction"
PIPELINE = "pipeline mode"
EXECUTEMANY = "executemany"
COPY = "COPY into a temporary table"
WEBSITE = "bench-website"

_MESSAGE_SET = (
    "ON CONFLICT (session_id, fingerprint) DO UPDATE SET website_id = excluded.website_id,"
    " timestamp = excluded.timestamp, from_event = excluded.from_event, data = excluded.data,"
    " replaced = excluded.replaced WHERE t.data IS DISTINCT FROM excluded.data"
    " RETURNING (xmax = 0), t.replaced"
)
_MESSAGES = "INSERT INTO messages AS t (session_id, fingerprint, website_id, timestamp," \
    " from_event, data, replaced) "
_UNNEST = (
    _MESSAGES + "SELECT u.s, u.f, u.w, u.ts, u.e, u.d::jsonb, u.r FROM unnest(%b::text[],"
    " %b::bigint[], %b::text[], %b::bigint[], %b::boolean[], %b::text[], %b::boolean[])"
    " AS u(s, f, w, ts, e, d, r) " + _MESSAGE_SET
)
_ONE = _MESSAGES + "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s) " + _MESSAGE_SET
_TEMPORARY = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS incoming (session_id text, fingerprint bigint,"
    " website_id text, timestamp bigint, from_event boolean, data text, replaced boolean)"
    " ON COMMIT DELETE ROWS"
)
_FROM_COPY = (
    _MESSAGES + "SELECT session_id, fingerprint, website_id, timestamp, from_event,"
    " data::jsonb, replaced FROM incoming " + _MESSAGE_SET
)
_REMOVE = (
    "WITH removed AS (DELETE FROM messages WHERE session_id = %(s)s"
    " AND NOT (fingerprint = ANY(%(kept)s::bigint[])) RETURNING 1),"
    " read AS (UPDATE messages SET from_event = FALSE WHERE session_id = %(s)s"
    " AND from_event AND fingerprint = ANY(%(kept)s::bigint[]))"
    " SELECT count(*) FROM removed"
)
_CONVERSATION = (
    "INSERT INTO conversations AS t (session_id, website_id, updated_at, data, replaced)"
    " VALUES (%s, %s, %s, %s::jsonb, %s) ON CONFLICT (session_id) DO UPDATE SET"
    " website_id = excluded.website_id, updated_at = excluded.updated_at,"
    " data = excluded.data, replaced = excluded.replaced"
    " WHERE t.data IS DISTINCT FROM excluded.data RETURNING (xmax = 0), t.replaced"
)


@dataclass(frozen=True)
class MethodRun:
    """One way of writing: message rows/s for first inserts and unchanged rows (medians over
    rounds), the rows it wrote in each pass (added + updated + removed, every round), and its
    rows/s over the store's (median of the per-round ratios)."""

    method: str
    insert_rows_per_s: float
    unchanged_rows_per_s: float
    insert_rounds: list[float]
    unchanged_rounds: list[float]
    written: list[tuple[int, int]]
    insert_vs_store: float
    unchanged_vs_store: float


Saver = Callable[[tuple[dict[str, Any], list[dict[str, Any]]]], int]
"""Saves one conversation and its messages; the message rows it wrote."""


def run(batch: Batch, threads: int, rounds: int, databases: Databases) -> list[MethodRun]:
    """Race the ways of writing ``batch`` from ``threads`` threads, ``rounds`` rounds."""
    names = [STORE, TRANSACTION, PIPELINE, EXECUTEMANY, COPY]
    passes: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in names}
    count = sum(len(messages) for _, messages in batch)
    for number in range(rounds):
        print(f"benchmarks: fleet, PostgreSQL write methods, round {number + 1}/{rounds}",
              file=sys.stderr)
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            with databases.database() as url:
                passes[name].append(_both_passes(name, url, batch, threads, count))
    store = passes[STORE]
    return [
        MethodRun(
            method=name,
            insert_rows_per_s=median([p[0] for p in found]),
            unchanged_rows_per_s=median([p[1] for p in found]),
            insert_rounds=[round(p[0]) for p in found],
            unchanged_rounds=[round(p[1]) for p in found],
            written=[(p[2], p[3]) for p in found],
            insert_vs_store=median(paired_ratios([p[0] for p in found], [p[0] for p in store])),
            unchanged_vs_store=median(paired_ratios([p[1] for p in found],
                                                    [p[1] for p in store])),
        )
        for name, found in passes.items()
    ]


def _both_passes(
    name: str, url: str, batch: Batch, threads: int, count: int
) -> tuple[float, float, int, int]:
    """First inserts, then the same rows: (rows/s, rows/s, written, written)."""
    from crisp_api.sync.postgres_database import PgDatabase  # noqa: PLC0415 - optional extra
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    pool_size = max(16, threads + 4)
    if name == STORE:
        with PostgresStore(url, pool_size=pool_size) as store:
            def save(item: tuple[dict[str, Any], list[dict[str, Any]]]) -> int:
                conversation, messages = item
                changes = store.save_conversation(
                    WEBSITE, conversation, MessageSpan(messages=messages, since=None))[1]
                return changes.added + changes.updated + changes.removed
            return _timed(save, batch, threads, count)
    db = PgDatabase(url, pool_size=pool_size, connect_timeout=10.0)
    try:
        method = _METHODS[name]
        return _timed(lambda item: method(db, *_values(*item)), batch, threads, count)
    finally:
        db.close()


def _timed(
    save: Saver, batch: Batch, threads: int, count: int
) -> tuple[float, float, int, int]:
    figures: list[float] = []
    written: list[int] = []
    for _ in range(2):
        started = time.perf_counter()
        with ThreadPoolExecutor(threads, thread_name_prefix="bench-method") as pool:
            written.append(sum(pool.map(save, batch)))
        figures.append(count / max(time.perf_counter() - started, 1e-9))
    return figures[0], figures[1], written[0], written[1]


Values = tuple[str, list[tuple[Any, ...]], list[int], tuple[Any, ...]]
"""A conversation ready to write: its session id, its message rows (as the ``messages``
table's columns), their fingerprints, its own row (as the ``conversations`` table's)."""


def _values(conversation: dict[str, Any], messages: list[dict[str, Any]]) -> Values:
    """The rows of one seeded conversation, each document as the store encodes it."""
    session_id = conversation["session_id"]
    encoded = [(session_id, m["fingerprint"], WEBSITE, m["timestamp"], False,
                canonical(m), False) for m in messages]
    return (session_id, encoded, [m["fingerprint"] for m in messages],
            (session_id, WEBSITE, conversation["updated_at"], canonical(conversation),
             False))


def _written(cur: psycopg.Cursor[Any]) -> int:
    """The rows the last upsert wrote (it returns one per row added or updated)."""
    return len(cur.fetchall())


def _rest(cur: psycopg.Cursor[Any], session_id: str, kept: list[int],
          conversation: tuple[Any, ...]) -> int:
    """The removal (and read flags) and the conversation; the messages removed."""
    found = cur.execute(_REMOVE, {"s": session_id, "kept": kept}).fetchone()
    cur.execute(_CONVERSATION, conversation).fetchall()
    return 0 if found is None else int(found[0])


def _transaction(db: PgDatabase, session_id: str, values: list[tuple[Any, ...]],
                 kept: list[int], conversation: tuple[Any, ...]) -> int:
    with db.transaction("bench") as cur:
        cur.execute(_UNNEST, [list(column) for column in zip(*values, strict=True)])
        return _written(cur) + _rest(cur, session_id, kept, conversation)


def _pipeline(db: PgDatabase, session_id: str, values: list[tuple[Any, ...]],
              kept: list[int], conversation: tuple[Any, ...]) -> int:
    with db.transaction("bench") as cur:
        connection = cur.connection
        with connection.pipeline():
            upsert, removal, row = connection.cursor(), connection.cursor(), connection.cursor()
            upsert.execute(_UNNEST, [list(column) for column in zip(*values, strict=True)])
            removal.execute(_REMOVE, {"s": session_id, "kept": kept})
            row.execute(_CONVERSATION, conversation)
        found = removal.fetchone()
        row.fetchall()
        return _written(upsert) + (0 if found is None else int(found[0]))


def _executemany(db: PgDatabase, session_id: str, values: list[tuple[Any, ...]],
                 kept: list[int], conversation: tuple[Any, ...]) -> int:
    with db.transaction("bench") as cur:
        cur.executemany(_ONE, values, returning=True)
        written = 0
        while True:
            written += len(cur.fetchall())
            if not cur.nextset():
                break
        return written + _rest(cur, session_id, kept, conversation)


def _copy(db: PgDatabase, session_id: str, values: list[tuple[Any, ...]],
          kept: list[int], conversation: tuple[Any, ...]) -> int:
    with db.transaction("bench") as cur:
        cur.execute(_TEMPORARY)
        with cur.copy("COPY incoming FROM STDIN") as copy:
            for value in values:
                copy.write_row(value)
        cur.execute(_FROM_COPY)
        return _written(cur) + _rest(cur, session_id, kept, conversation)


_METHODS: dict[str, Callable[[PgDatabase, str, list[tuple[Any, ...]], list[int],
                              tuple[Any, ...]], int]] = {
    TRANSACTION: _transaction, PIPELINE: _pipeline, EXECUTEMANY: _executemany, COPY: _copy,
}


def winner(runs: Sequence[MethodRun]) -> tuple[MethodRun, MethodRun] | None:
    """The fastest method for first inserts and the runner-up (None: fewer than two)."""
    ranked = sorted(runs, key=lambda run: run.insert_rows_per_s, reverse=True)
    return (ranked[0], ranked[1]) if len(ranked) > 1 else None
