"""Group commit: the SQLite store's conversations saved by one writer, many per transaction.

The promises under test: a conversation and its messages are saved together or not at all,
also when another conversation of its group fails; a failure is its conversation's; what is
reported stored is stored; and the checkpoint never moves past a conversation not saved.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.sync.store import Changes, MessageSpan, Row, StoreError
from crisp_api.sync.writer import GroupWriter
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import assert_exact_copy, checkpoint, fast_client, stored

WEBSITE = "w"
Outcomes = dict[str, "tuple[Changes, Changes] | BaseException"]


class FailingInGroup(SQLiteStore):
    """A real SQLite store whose first conversation saved after another one of the same group
    fails at the end of its save, once all its rows are written (as a save that breaks
    half-way would)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.in_group = 0
        self.failing = False
        self.failed_session: str | None = None
        self.saved_before_it = ""

    @contextmanager
    def saving_together(self) -> Iterator[None]:
        self.in_group = 0
        with super().saving_together():
            yield

    def save_conversation(self, website_id: str, conversation: Row, span: MessageSpan
                          ) -> tuple[Changes, Changes]:
        time.sleep(0.005)  # a slow disk: the workers read faster, so groups form
        self.in_group += 1
        session_id = str(conversation["session_id"])
        self.failing = self.failed_session is None and self.in_group > 1
        if self.failing:
            self.failed_session = session_id
        changes = super().save_conversation(website_id, conversation, span)
        if self.failed_session is None:
            self.saved_before_it = session_id
        return changes

    def _put_aside(self, cur: Any, website_id: str, aside: Any) -> None:
        """The last step of a save, inside its transaction."""
        if self.failing:
            raise OSError("the save broke after writing its rows")
        super()._put_aside(cur, website_id, aside)


def test_a_conversation_failing_inside_a_group_leaves_nothing_and_the_rest_lands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=60, messages=5, seed=31) as fake:
        client = fast_client(fake)
        store = FailingInGroup(path)
        with store:
            report = sync_website(client, fake.website_id, store, workers=8)
        failed = store.failed_session
        assert failed is not None, "no group held two conversations"
        assert not report.complete
        [error] = report.errors  # that conversation's alone
        assert error.startswith(f"{failed}: store: ")
        assert error.endswith("save_conversation failed (OSError)")
        assert checkpoint(path, fake.website_id) is None  # the checkpoint did not move
        conversations, messages = stored(path, fake.website_id)
        # Nothing of the failed conversation, though its rows were written in the group.
        assert failed not in conversations
        assert not [key for key in messages if key[0] == failed]
        # The conversation saved before it in the same group landed, and every other one.
        assert store.saved_before_it in conversations
        assert len(conversations) == 59
        truth = fake.ground_truth()
        assert report.messages.added == sum(
            len(t.messages) for sid, t in truth.items() if sid != failed)

        with SQLiteStore(path) as again:
            rerun = sync_website(client, fake.website_id, again, workers=8)
        assert rerun.complete, rerun.errors
        assert rerun.conversations.added == 1
        assert_exact_copy(path, fake)


def _conversation(number: int) -> tuple[Row, MessageSpan]:
    session_id = f"s{number}"
    messages = [{"fingerprint": f, "timestamp": 1_000 + f, "session_id": session_id}
                for f in range(3)]
    return {"session_id": session_id, "updated_at": 5_000}, MessageSpan(messages, None)


def _write(store: SQLiteStore, numbers: range) -> Outcomes:
    """Hand ``numbers``' conversations to a writer, all in one group (queued while the writer
    is held in a first group of its own); their outcomes by session id."""
    outcomes: Outcomes = {}
    release = threading.Event()

    @contextmanager
    def together() -> Iterator[None]:
        release.wait(10)
        with store.saving_together():
            yield

    writer: GroupWriter[str, tuple[Changes, Changes]] = GroupWriter(
        together, outcomes.__setitem__)
    writer.put("gate", lambda: (Changes(), Changes()))
    time.sleep(0.1)  # the writer takes the gate alone, and waits in its group
    for number in numbers:
        conversation, span = _conversation(number)
        writer.put(str(conversation["session_id"]),
                   partial(store.save_conversation, WEBSITE, conversation, span))
    release.set()
    writer.close()
    assert writer.failure is None
    del outcomes["gate"]
    return outcomes


def _held(path: Path) -> tuple[set[str], set[str]]:
    """The conversations stored, and the sessions of the messages stored."""
    db = sqlite3.connect(path)
    try:
        return ({sid for (sid,) in db.execute("SELECT session_id FROM conversations")},
                {sid for (sid,) in db.execute("SELECT session_id FROM messages")})
    finally:
        db.close()


def test_a_group_that_cannot_begin_reports_every_save_failed(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with SQLiteStore(path, busy_timeout=0.1) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        try:
            outcomes = _write(store, range(4))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    assert sorted(outcomes) == ["s0", "s1", "s2", "s3"]
    for outcome in outcomes.values():
        assert isinstance(outcome, StoreError)
        assert "locked" in str(outcome)
    assert _held(path) == (set(), set())


class FullAfter(SQLiteStore):
    """A real SQLite store whose file may not grow past its size when ``cap`` is called."""

    def cap(self) -> None:
        with self._db.statement("cap") as db:
            db.execute("PRAGMA max_page_count = 1")  # SQLite raises it to the current size


def test_a_full_disk_in_a_group_reports_stored_only_what_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    store = FullAfter(path)
    with store:
        store.cap()
        outcomes = _write(store, range(40))
    conversations, message_sessions = _held(path)
    saved = {sid for sid, outcome in outcomes.items() if not isinstance(outcome, BaseException)}
    failed = set(outcomes) - saved
    assert failed, "the file had room for every conversation: the test proves nothing"
    assert all(isinstance(outcomes[sid], StoreError) for sid in failed)
    assert any(_permanent(outcomes[sid]) for sid in failed)
    assert conversations == saved  # reported stored is stored, and nothing else is
    assert message_sessions <= saved  # no message of a failed conversation


def _permanent(outcome: Any) -> bool:
    return isinstance(outcome, StoreError) and outcome.permanent
