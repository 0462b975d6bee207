"""`SqlStore`: the store methods whose SQL is the same on every database, written once over
the `SqlDialect` a store gives it.

That is each website's state (its checkpoint, when its people were last listed, its last
complete run), the removals live events ask for, the quarantine table, the website status of
``crisp-sync --status``, and the store's side of the allowance (`crisp_api.sync.allowance`):
the quota ledger (requests sent per credential and quota day) and each credential's
allowance. Credentials are token identifiers, never keys. The tables are those of
`crisp_api.sync.schema`. A listing page's stale conversations (`stale_of`) are told here too,
from a query each store writes its own way (how a page's ids travel differs).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from crisp_api.sync.rows import Quarantined, is_key
from crisp_api.sync.sql_dialect import Cursor, SqlDialect, Statement
from crisp_api.sync.store import Changes, CredentialAllowance, WebsiteStatus

D = TypeVar("D", bound=SqlDialect)

_ALLOWANCE = ("spent_until_ms", "learnt_rate", "daily_quota", "quota_reset", "reached_rate")
"""The columns of ``allowance`` besides its key, ``credential``, as `CredentialAllowance`
orders them."""
_QUARANTINE = ("raw", "reason", "quarantined_ms")
"""The columns of ``quarantine`` besides its key (website, kind, session, ident)."""


class SqlStore(Generic[D]):
    """What both SQL stores do with the same SQL, over their database ``db`` (a `SqlDialect`).

    A store built on it adds what its database does its own way: saving conversations,
    messages and listed rows, merging edits, holding a website, closing."""

    def __init__(self, db: D) -> None:
        self._db = db

    def _select(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of one query."""
        with self._db.statement("read") as cur:
            return cur.execute(sql, values).fetchall()

    def stale_of(self, website_id: str, listed: Mapping[str, int]) -> dict[str, int | None]:
        """Those of ``listed`` not stored at their ``updated_at`` or later, with what is
        stored (`crisp_api.sync.store.BatchStates`): one query for the ids a store can key
        (`_stale_keyed`), the others stale at once."""
        stale: dict[str, int | None] = {}
        keyed: dict[str, int] = {}
        for session_id, stamp in listed.items():
            if is_key(session_id):
                keyed[session_id] = stamp
            else:
                stale[session_id] = None
        if keyed:
            with self._db.statement("stale_of") as cur:
                stale.update(self._stale_keyed(cur, keyed))
        return stale

    def _stale_keyed(self, cur: Cursor, keyed: dict[str, int]) -> Iterable[tuple[str, int | None]]:
        """`stale_of`'s query, in the database's own terms: each stale id and its stored
        ``updated_at`` (None: not stored, or stored without one)."""
        raise NotImplementedError

    def _state(self, website_id: str, column: str) -> int | None:
        found = self._select(
            f"SELECT {column} FROM sync_state WHERE website_id = {self._db.mark}",  # noqa: S608
            (website_id,),
        )
        return None if not found or found[0][0] is None else int(found[0][0])

    def _set_state(self, website_id: str, column: str, value: int) -> None:
        """Set one column of the website's state, leaving the others as they are."""
        with self._db.statement("set state") as cur:
            cur.execute(self._db.upsert("sync_state", ("website_id",), (column,)),
                        (website_id, value))

    def checkpoint(self, website_id: str) -> int | None:
        """The watermark (Crisp's epoch ms) up to which every change is stored, if any."""
        return self._state(website_id, "checkpoint_ms")

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        """Record that everything updated up to ``until_ms`` (Crisp's time) is stored."""
        self._set_state(website_id, "checkpoint_ms", until_ms)

    def people_listed_at(self, website_id: str) -> int | None:
        """When (epoch ms, this machine's clock) the last full people listing completed."""
        return self._state(website_id, "people_listed_ms")

    def set_people_listed_at(self, website_id: str, at_ms: int) -> None:
        """Record that a full people listing completed at ``at_ms``."""
        self._set_state(website_id, "people_listed_ms", at_ms)

    # Removals (live events) ----------------------------------------------------------------

    def _remove(self, statements: Sequence[Statement]) -> Changes:
        """Run ``statements`` in one transaction; the rows they deleted, as removed."""
        with self._db.transaction("remove") as cur:
            return Changes(removed=sum(cur.execute(sql, values).rowcount
                                       for sql, values in statements))

    def remove_message(self, website_id: str, session_id: str, fingerprint: int) -> Changes:
        """Delete a stored message, if there (none is under a key no store can hold)."""
        if not (is_key(session_id) and is_key(fingerprint)):
            return Changes()
        mark = self._db.mark
        return self._remove([(
            f"DELETE FROM messages WHERE session_id = {mark} AND fingerprint = {mark}",  # noqa: S608 - fixed text
            (session_id, fingerprint),
        )])

    def remove_conversation(self, website_id: str, session_id: str) -> Changes:
        """Delete a conversation and its messages, in one transaction."""
        if not is_key(session_id):
            return Changes()
        mark = self._db.mark
        return self._remove([
            (f"DELETE FROM messages WHERE session_id = {mark}", (session_id,)),  # noqa: S608
            (f"DELETE FROM conversations WHERE session_id = {mark}", (session_id,)),  # noqa: S608
        ])

    def remove_person(self, website_id: str, people_id: str) -> Changes:
        """Delete a people profile, if there."""
        if not is_key(people_id):
            return Changes()
        mark = self._db.mark
        return self._remove([(
            f"DELETE FROM people WHERE website_id = {mark} AND people_id = {mark}",  # noqa: S608 - fixed text
            (website_id, people_id),
        )])

    # Quarantine and status -----------------------------------------------------------------

    def _put_aside(self, cur: Cursor, website_id: str, aside: Sequence[Quarantined]) -> None:
        """Write rows that cannot be keyed to the quarantine table, within ``cur``'s
        transaction; a row put aside again keeps one entry, with its latest raw answer,
        reason and time."""
        if not aside:
            return
        now_ms = int(time.time() * 1000)
        cur.executemany(
            self._db.upsert("quarantine", ("website_id", "kind", "session_id", "ident"),
                            _QUARANTINE),
            [(website_id, q.kind, q.session_id, q.ident, q.raw, q.reason, now_ms)
             for q in aside],
        )

    def quarantined(self, website_id: str) -> int:
        """How many rows of the website the quarantine table holds."""
        [(count,)] = self._select(
            f"SELECT count(*) FROM quarantine WHERE website_id = {self._db.mark}",  # noqa: S608
            (website_id,),
        )
        return int(count)

    def statuses(self) -> list[WebsiteStatus]:
        """Every website this store holds anything of (state, conversations or quarantined
        rows), by id."""
        return [
            WebsiteStatus(website_id, checkpoint, people, int(quarantined), last_run,
                          credential)
            for website_id, checkpoint, people, quarantined, last_run, credential
            in self._select(
                "SELECT w.website_id, s.checkpoint_ms, s.people_listed_ms,"
                " (SELECT count(*) FROM quarantine q WHERE q.website_id = w.website_id),"
                " s.last_run_ms, s.credential"
                " FROM (SELECT website_id FROM sync_state"
                " UNION SELECT website_id FROM quarantine"
                " UNION SELECT DISTINCT website_id FROM conversations) AS w"
                " LEFT JOIN sync_state AS s ON s.website_id = w.website_id"
                " ORDER BY w.website_id",
                (),
            )
        ]

    # The allowance ---------------------------------------------------------------------------

    def _write_allowance(self, sql: str, values: tuple[Any, ...]) -> None:
        with self._db.transaction("write the allowance") as cur:
            cur.execute(sql, values)

    def count_requests(self, credential: str, day: int, requests: int) -> None:
        """Add ``requests`` sent under ``credential`` on quota day ``day`` (days since the
        epoch, counted from the quota's reset time) to the ledger: one statement, so workers
        sharing the database add up, none lost."""
        if requests <= 0:
            return
        self._write_allowance(
            self._db.upsert("quota_ledger", ("credential", "day"), ("requests",),
                            assign={"requests": "quota_ledger.requests + excluded.requests"}),
            (credential, day, requests),
        )

    def requests_on(self, credential: str, day: int) -> int:
        """Requests the ledger counts under ``credential`` on quota day ``day``."""
        mark = self._db.mark
        found = self._select(
            f"SELECT requests FROM quota_ledger WHERE credential = {mark} AND day = {mark}",  # noqa: S608
            (credential, day),
        )
        return int(found[0][0]) if found else 0

    def allowance(self, credential: str) -> CredentialAllowance:
        """What is kept of ``credential``'s allowance (all unknown if nothing is)."""
        found = self._select(
            f"SELECT {', '.join(_ALLOWANCE)} FROM allowance "  # noqa: S608 - fixed names
            f"WHERE credential = {self._db.mark}",
            (credential,),
        )
        if not found:
            return CredentialAllowance()
        spent, rate, quota, reset, reached = found[0]
        return CredentialAllowance(
            None if spent is None else int(spent), None if rate is None else float(rate),
            None if quota is None else int(quota), float(reset or 0.0),
            None if reached is None else float(reached),
        )

    def set_allowance(self, credential: str, allowance: CredentialAllowance) -> None:
        """Keep ``allowance`` as ``credential``'s, replacing what was kept."""
        self._write_allowance(
            self._db.upsert("allowance", ("credential",), _ALLOWANCE),
            (credential, allowance.spent_until_ms, allowance.learnt_rate,
             allowance.daily_quota, allowance.quota_reset, allowance.reached_rate),
        )

    def set_last_run(self, website_id: str, at_ms: int | None, credential: str) -> None:
        """Record that a complete run of ``website_id`` ended at ``at_ms`` (epoch ms; None:
        a run began, the last complete one stays), its requests spent under
        ``credential``."""
        self._write_allowance(
            self._db.upsert(
                "sync_state", ("website_id",), ("last_run_ms", "credential"),
                assign={"last_run_ms": "COALESCE(excluded.last_run_ms, sync_state.last_run_ms)",
                        "credential": "excluded.credential"},
            ),
            (website_id, at_ms, credential),
        )
