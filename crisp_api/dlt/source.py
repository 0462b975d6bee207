"""`crisp_source`: Crisp conversations, messages, people and operators as a dlt source.

The source runs crisp-sync's engine (`crisp_api.sync.engine.sync_website`) with a
`StateStore`: the same keyset listing, tie-safe message walk, walk down to the newest stored
message, clock rules and adaptive rate, with the checkpoints and per-conversation marks in
dlt's source state instead of a database. The engine runs in a thread of its own; what it
saves comes out of one hidden resource as `Batch` values, and one transformer per table
picks its own, so every table of a run comes from one pass over Crisp.

Every table is loaded with the ``merge`` write disposition on Crisp's keys; a message Crisp
no longer lists in a span the engine read again arrives as a row flagged ``_deleted``, dlt's
``hard_delete`` column, and is deleted from the destination. A run that could not sync
everything raises (`IncompleteSyncError`, or the error that ended it, such as
`crisp_api.errors.QuotaSpentError`): dlt then loads nothing of it and keeps the state of the
last complete run, so the next run covers the same changes again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.extract import DltResource

from crisp_api import defaults
from crisp_api.client import Crisp
from crisp_api.dlt.state_store import (
    CONVERSATIONS,
    DELETED,
    MESSAGES,
    OPERATORS,
    PEOPLE,
    QUARANTINE,
    Batch,
    StateStore,
)
from crisp_api.errors import NotFoundError
from crisp_api.sync.allowance import Allowance
from crisp_api.sync.engine import DEFAULT_PEOPLE_INTERVAL, SyncReport, sync_website
from crisp_api.sync.run import connected_websites, sync_client

logger = logging.getLogger(__name__)

HANDOFF = 64
"""Batches the engine may hand over before it waits for dlt to take them."""
WAIT = 0.1
"""Seconds between two looks at whether dlt stopped reading, while the hand-off is full."""

KEY, TEXT, BIGINT = "key", "text", "bigint"
TABLES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    CONVERSATIONS: (("session_id",), {"website_id": TEXT, "session_id": KEY,
                                      "updated_at": BIGINT, "data": TEXT}),
    MESSAGES: (("session_id", "fingerprint"),
               {"website_id": TEXT, "session_id": KEY, "fingerprint": KEY,
                "timestamp": BIGINT, "data": TEXT, DELETED: DELETED}),
    PEOPLE: (("website_id", "people_id"), {"website_id": KEY, "people_id": KEY, "data": TEXT}),
    OPERATORS: (("website_id", "user_id"), {"website_id": KEY, "user_id": KEY, "data": TEXT}),
    QUARANTINE: (("website_id", "kind", "session_id", "ident"),
                 {"website_id": KEY, "kind": KEY, "session_id": KEY, "ident": KEY,
                  "raw": TEXT, "reason": TEXT}),
}
"""Each table's primary key (Crisp's keys: `crisp_api.sync.rows`) and columns: each row in
full is ``data``, the JSON text Crisp sent (`crisp_api.sync.rows.document`)."""


def _column(name: str, kind: str) -> dict[str, Any]:
    """A column's dlt hints (a new dict each time: dlt completes the hints it is given)."""
    if kind == DELETED:
        return {"data_type": "bool", "hard_delete": True}
    if kind == KEY:
        return {"data_type": "bigint" if name == "fingerprint" else "text", "nullable": False}
    return {"data_type": kind}


class IncompleteSyncError(Exception):
    """Some conversations (or a website's people or operators) could not be synced: dlt
    loads nothing of the run and the next run covers the same changes again."""

    def __init__(self, errors: Sequence[str]) -> None:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5
                                         else "")
        super().__init__(f"crisp_source: the run could not sync everything, nothing of it "
                         f"is loaded; rerun to finish ({shown})")
        self.errors = list(errors)


@dataclass(frozen=True)
class SourceSettings:
    """What `crisp_source` was given (the key never shown)."""

    website_ids: list[str] | None
    identifier: str
    key: str = field(repr=False)
    tier: str
    rest_host: str | None
    workers: int
    people_interval: float
    daily_quota: int | None

    def client(self) -> Crisp:
        """The engine's client, as crisp-sync's (`crisp_api.sync.run.sync_client`)."""
        return sync_client(self.identifier, self.key, self.tier, self.rest_host,
                           workers=self.workers, daily_quota=self.daily_quota)


@dlt.source(name="crisp", section="crisp", max_table_nesting=0)
def crisp_source(
    website_ids: list[str] | None = None,
    *,
    identifier: str = dlt.secrets.value,
    key: str = dlt.secrets.value,
    tier: str = "plugin",
    rest_host: str | None = None,
    workers: int = 8,
    people_interval: float = DEFAULT_PEOPLE_INTERVAL,
    daily_quota: int | None = None,
) -> list[DltResource]:
    """Crisp's ``conversations``, ``messages``, ``people`` and ``operators`` (and the
    ``quarantine`` of rows no key can hold) of ``website_ids``, or of every website the
    plugin token is connected to; see the module docstring.

    ``identifier`` and ``key`` come from dlt's secrets (``[sources.crisp]`` of
    ``secrets.toml``, or ``SOURCES__CRISP__IDENTIFIER`` and ``SOURCES__CRISP__KEY``).
    ``workers`` threads read messages; profiles are listed again once the last listing is
    ``people_interval`` seconds old; ``daily_quota``, when known, is the token's requests per
    day. Deselecting ``people`` or ``operators`` skips them; the other tables come from one
    read and are selected together.
    """
    if isinstance(website_ids, str) or not (
            website_ids is None or all(isinstance(w, str) and w for w in website_ids)):
        raise ValueError("crisp_source: website_ids must be a list of website ids (or None "
                         "for every website the plugin token is connected to)")
    if workers < 1:
        raise ValueError(f"crisp_source: workers must be at least 1, got {workers}")
    if not people_interval >= 0:
        raise ValueError(f"crisp_source: people_interval must be >= 0 seconds, "
                         f"got {people_interval}")
    if tier not in defaults.TIERS:
        raise ValueError(f"crisp_source: tier must be one of {sorted(defaults.TIERS)}, "
                         f"got {tier!r}")
    settings = SourceSettings(None if website_ids is None else list(website_ids), identifier,
                              key, tier, rest_host, workers, people_interval, daily_quota)

    @dlt.resource(name="crisp_sync", selected=False)
    def crisp_sync() -> Iterator[Batch]:
        """The engine's run, as the batches its saves emit."""
        selected = set(dlt.current.source().selected_resources)
        if not {CONVERSATIONS, MESSAGES, QUARANTINE} <= selected:
            raise ValueError("crisp_source: conversations, messages and quarantine come from "
                             "one read of each conversation: select them together")
        yield from run_engine(settings, dlt.current.source_state(),
                              people=PEOPLE in selected, operators=OPERATORS in selected)

    return [_table(crisp_sync, name) for name in TABLES]


def _table(parent: DltResource, name: str) -> DltResource:
    """The transformer loading ``name``'s batches of ``parent``."""

    def pick(batch: Batch) -> Iterator[list[dict[str, Any]]]:
        if batch.table == name:
            yield batch.rows

    primary_key, columns = TABLES[name]
    resource: DltResource = dlt.transformer(
        data_from=parent, name=name, write_disposition="merge", primary_key=primary_key,
        columns={column: _column(column, kind) for column, kind in columns.items()},
    )(pick)
    return resource


def run_engine(
    settings: SourceSettings, state: MutableMapping[str, Any], *, people: bool = True,
    operators: bool = True,
) -> Iterator[Batch]:
    """Run the engine over ``settings``' websites with a `StateStore` on ``state`` in a
    thread, and yield its batches as they come; raise what ended the run, or
    `IncompleteSyncError`. If the caller stops reading, the engine is stopped."""
    handoff: queue.Queue[Batch | None] = queue.Queue(maxsize=HANDOFF)
    stop = threading.Event()
    failures: list[BaseException] = []
    reports: list[SyncReport] = []

    def hand(item: Batch | None) -> None:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=WAIT)
            except queue.Full:
                continue
            return
        if item is not None:
            raise RuntimeError("the dlt extraction stopped reading")

    def work() -> None:
        try:
            reports.extend(_sync(settings, StateStore(state, hand), stop,
                                 people=people, operators=operators))
        except BaseException as exc:  # read by the generator below, on its own thread
            failures.append(exc)
        finally:
            hand(None)

    thread = threading.Thread(target=work, name="crisp-dlt-engine", daemon=True)
    thread.start()
    try:
        while (batch := handoff.get()) is not None:
            yield batch
    finally:
        stop.set()
        thread.join()
    if failures:
        raise failures[0]
    errors = [f"{report.website_id}: {line}" for report in reports for line in report.errors]
    if errors:
        raise IncompleteSyncError(errors)


def _log(report: SyncReport) -> None:
    """Say what one website's run read (info) and what the API did not let it see (warning:
    more than a page of messages in one millisecond)."""
    logger.info("crisp_source: website %s: %d conversations read (%d requests), %d message "
                "rows, %d deleted, %d people rows, %d operators, %d rows put aside",
                report.website_id, report.conversations_fetched, report.calls,
                report.messages.added + report.messages.updated, report.messages.removed,
                report.people.updated, report.operators.updated, report.quarantined)
    for warning in report.warnings:
        logger.warning("crisp_source: website %s: %s", report.website_id, warning)


def _sync(
    settings: SourceSettings, store: StateStore, stop: threading.Event, *, people: bool,
    operators: bool,
) -> list[SyncReport]:
    """One engine run over every website, through one client and the credential's allowance
    (kept in the state, as crisp-sync keeps it in its database)."""
    client = settings.client()
    allowance = Allowance(store, client, settings.identifier,
                          daily_quota=settings.daily_quota, quota_reset=0.0)
    allowance.open()
    reports = []
    try:
        chosen = settings.website_ids
        for website_id in connected_websites(client) if chosen is None else chosen:
            if stop.is_set():
                break
            try:
                report = sync_website(client, website_id, store, workers=settings.workers,
                                      people=people, people_interval=settings.people_interval,
                                      operators=operators, stop=stop)
            except NotFoundError:
                if chosen is not None:
                    raise
                continue  # disconnected since it was listed
            allowance.completed([report])
            reports.append(report)
            _log(report)
    finally:
        allowance.close()
        client.close()
    return reports
