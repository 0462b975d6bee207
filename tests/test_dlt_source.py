"""`crisp_api.dlt.crisp_source` in a real dlt pipeline into DuckDB, against the fake Crisp:
exact after a first run; after every kind of change, a run failing half-way loads nothing
and the next one is exact at crisp-sync's request count for those changes (issue 25)."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from dlt.extract.exceptions import ResourceExtractionError
from dlt.pipeline.exceptions import PipelineStepFailed

from crisp_api import extras
from crisp_api.dlt import IncompleteSyncError, crisp_source
from crisp_api.dlt.source import SourceSettings, run_engine
from crisp_api.dlt.state_store import Batch, StateStore
from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.sync.store import ConversationState, MessageSpan
from crisp_api.testing import FakeCrisp, Faults
from crisp_api.testing.data import MESSAGES_PAGE
from tests.sync.helpers import assert_exact_copy, fast_client

Loaded = tuple[dict[str, Any], dict[tuple[str, int], Any]]


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt reports anonymous usage unless told not to: a test sends nothing outside."""
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")


@pytest.fixture
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=16, messages=20, people=60, seed=251) as server:
        yield server


def _pipeline(tmp_path: Path) -> dlt.Pipeline:
    return dlt.pipeline("crisp_test", destination=dlt.destinations.duckdb(
        str(tmp_path / "warehouse.duckdb")), pipelines_dir=str(tmp_path / "pipelines"),
        dataset_name="crisp")


def _run(pipeline: dlt.Pipeline, fake: FakeCrisp, workers: int = 4) -> int:
    """One pipeline run of the fake's website; the requests it sent."""
    fake.reset_stats()
    pipeline.run(crisp_source([fake.website_id], identifier=fake.identifier, key=fake.key,
                              rest_host=fake.url, workers=workers))
    return fake.stats.requests


def _sqlite_run(path: Path, fake: FakeCrisp) -> int:
    """One crisp-sync run of the fake's website into SQLite (one worker); the requests it
    sent."""
    fake.reset_stats()
    with SQLiteStore(path) as store:
        assert sync_website(fast_client(fake), fake.website_id, store, workers=1).complete
    return fake.stats.requests


def _loaded(tmp_path: Path) -> Loaded:
    """The conversations (by session id) and messages (by key) in DuckDB, as Crisp's JSON."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        conversations = {sid: json.loads(data) for sid, data in db.execute(
            "SELECT session_id, data FROM crisp.conversations").fetchall()}
        messages = {(sid, fingerprint): json.loads(data) for sid, fingerprint, data in db.execute(
            "SELECT session_id, fingerprint, data FROM crisp.messages").fetchall()}
    return conversations, messages


def _truth(fake: FakeCrisp) -> Loaded:
    truth = fake.ground_truth()
    return ({sid: t.conversation for sid, t in truth.items()},
            {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages})


def _change_everything(fake: FakeCrisp) -> None:
    """New messages, an edit, removals (the walk's anchor, one inside the re-read page), new
    conversations and messages sharing a millisecond across a page boundary."""
    first, second, third, fourth = (c["session_id"] for c in fake.conversations()[:4])
    fake.add_messages(first, 3)
    edited = fake.messages(first)[-2]
    fake.edit_message(first, edited["fingerprint"], "corrected text")
    fake.remove_message(second, fake.messages(second)[-1]["fingerprint"])
    fake.remove_message(third, fake.messages(third)[-5]["fingerprint"])
    fake.add_messages(third, 1)
    newest = fake.messages(fourth)[-1]["timestamp"]
    fake.add_messages(fourth, 5, timestamp=newest + 10)  # five share one millisecond
    fake.add_messages(fourth, MESSAGES_PAGE - 3)  # the newest page ends inside the five
    fake.create_conversations(3, messages=MESSAGES_PAGE + 5)


def test_first_failed_and_resumed_runs_are_exact_at_crisp_syncs_request_count(
    tmp_path: Path, fake: FakeCrisp
) -> None:
    # One worker each: with several, which conversation is read first decides whether a
    # fresh client has seen Crisp's 206 before a page of exactly 40 (one request more).
    pipeline = _pipeline(tmp_path)
    sqlite = tmp_path / "crisp.sqlite3"
    assert _run(pipeline, fake, workers=1) == _sqlite_run(sqlite, fake)
    first = _loaded(tmp_path)
    assert first == _truth(fake)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM crisp.people").fetchone() == (60,)
        assert db.execute("SELECT count(*) FROM crisp.operators").fetchone() == (3,)

    _change_everything(fake)
    crisp_sync_requests = _sqlite_run(sqlite, fake)
    assert_exact_copy(sqlite, fake)
    # A run stopped half-way by failing reads: typed, and nothing of it loaded.
    fake.set_faults(Faults(error_rate=1.0, budget=20, routes={"get_messages_in_conversation"}))
    with pytest.raises(PipelineStepFailed) as failed:
        _run(pipeline, fake)
    assert any(isinstance(cause, IncompleteSyncError) for cause in _causes(failed.value))
    assert "rerun to finish" in str(failed.value)
    assert _loaded(tmp_path) == first  # no row, and no state moved without its rows
    fake.set_faults(Faults())
    # Resumed: exact, at the cost of crisp-sync's incremental run on the same changes.
    assert _run(pipeline, fake, workers=1) == crisp_sync_requests
    assert _loaded(tmp_path) == _truth(fake)
    assert _run(pipeline, fake) <= 2  # unchanged: one listing page, the operators


def _causes(error: BaseException) -> Iterator[BaseException]:
    found: BaseException | None = error
    while found is not None:
        yield found
        found = found.__cause__ or found.__context__


def test_without_dlt_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(extras.MODULES, "dlt", ("dlt_is_not_installed",))
    for name in [name for name in sys.modules if name.startswith("crisp_api.dlt")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"pip install 'crisp-api-next\[dlt\]'"):
        importlib.import_module("crisp_api.dlt")


# The store the engine writes to inside the source, on its own -----------------------------


def _message(fingerprint: int, timestamp: int, content: str = "hello") -> dict[str, Any]:
    return {"session_id": "s1", "fingerprint": fingerprint, "timestamp": timestamp,
            "content": content}


def _save(store: StateStore, messages: list[dict[str, Any]], since: int | None = None,
          until: int | None = None) -> None:
    store.save_conversation("w1", {"session_id": "s1", "updated_at": 2_000},
                            MessageSpan(messages, since, until))


def test_a_span_deletes_the_loaded_messages_crisp_no_longer_lists_and_only_those() -> None:
    batches: list[Batch] = []
    state: dict[str, Any] = {}
    store = StateStore(state, batches.append)
    _save(store, [_message(1, 100), _message(2, 200), _message(3, 300), _message(4, 400)])
    assert store.conversation_state("w1", "s1") == ConversationState(2_000, 400)
    batches.clear()

    # Re-read from 150 up to what the listing saw (350): 2 is edited, 3 is gone, 1 is
    # before the span and 4 newer than the listing: neither is judged.
    _save(store, [_message(2, 200, "edited")], since=150, until=350)

    deleted = [row for batch in batches if batch.table == "messages" for row in batch.rows
               if row.get("_deleted")]
    assert [(row["session_id"], row["fingerprint"]) for row in deleted] == [("s1", 3)]
    [edited] = [row for batch in batches if batch.table == "messages" for row in batch.rows
                if not row.get("_deleted")]
    assert json.loads(edited["data"])["content"] == "edited"
    assert store.conversation_state("w1", "s1") == ConversationState(2_000, 400)
    assert sorted(state["websites"]["w1"]["conversations"]["s1"]["messages"]) == ["1", "2", "4"]


def test_rows_no_key_can_hold_go_to_the_quarantine_table() -> None:
    batches: list[Batch] = []
    store = StateStore({}, batches.append)
    _save(store, [_message(1, 100), {"session_id": "s1", "fingerprint": 2**70, "timestamp": 5}])
    store.save_people("w1", [{"nickname": "no people_id"}])
    assert store.quarantined("w1") == 2
    aside = [row for batch in batches if batch.table == "quarantine" for row in batch.rows]
    assert {row["kind"] for row in aside} == {"message", "person"}


def test_what_the_api_cannot_list_is_said_not_hidden(caplog: pytest.LogCaptureFixture) -> None:
    with FakeCrisp(conversations=0, messages=0, people=1, seed=252) as fake:
        (session_id,) = fake.create_conversations(1, messages=3)
        newest = fake.messages(session_id)[-1]["timestamp"]
        fake.add_messages(session_id, MESSAGES_PAGE + 5, timestamp=newest + 10)
        settings = SourceSettings([fake.website_id], fake.identifier, fake.key, "plugin",
                                  fake.url, 1, 0.0, None)
        with caplog.at_level(logging.INFO, logger="crisp_api.dlt.source"):
            batches = list(run_engine(settings, {}))
    assert any(batch.table == "messages" for batch in batches)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(newest + 10) in warning.getMessage()
    assert fake.website_id in warning.getMessage()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"website_ids": "one-website"}, "website_ids"), ({"workers": 0}, "workers"),
     ({"tier": "admin"}, "tier"), ({"people_interval": -1.0}, "people_interval")],
)
def test_arguments_that_cannot_work_are_refused_naming_them(
    arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as refused:
        crisp_source(**{"identifier": "ident", "key": "never-shown", **arguments})
    assert "never-shown" not in str(refused.value)


def test_people_and_operators_may_be_left_out_but_not_half_of_a_conversation(
    tmp_path: Path, fake: FakeCrisp
) -> None:
    _pipeline(tmp_path)  # the active pipeline, whose (empty) state a listed source reads

    def source() -> Any:
        return crisp_source([fake.website_id], identifier=fake.identifier, key=fake.key,
                            rest_host=fake.url)

    with pytest.raises(ResourceExtractionError, match="select them together"):
        list(source().with_resources("conversations", "people"))
    fake.reset_stats()
    rows = list(source().with_resources("conversations", "messages", "quarantine"))
    assert len(rows) == len(_truth(fake)[0]) + len(_truth(fake)[1])
    assert fake.stats.count("GET", "/website/{website_id}/people/profiles/{page_number}") == 0
    assert fake.stats.count("GET", "/website/{website_id}/operators/list") == 0
