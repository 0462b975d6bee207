"""Confirming what events touched through the REST API (`crisp_api.sync.recheck`), in
process: the fake Crisp, a real SQLite store, the real event applier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync import SQLiteStore, engine, sync_website
from crisp_api.sync.engine import SyncReport
from crisp_api.sync.event_applier import EventApplier
from crisp_api.sync.recheck import MAX_NAMED_MESSAGES, Touched, recheck_website
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import assert_exact_copy, stored

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

Copy = tuple[FakeCrisp, Any, SQLiteStore, EventApplier, Path]


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[Copy]:
    """An exact copy of a fake whose conversations hold more than a page of messages."""
    path = tmp_path / "recheck.sqlite3"
    with FakeCrisp(conversations=3, messages=2, seed=41) as fake, fake.client(
        cache_ttl=0
    ) as client, SQLiteStore(path) as store:
        for session in fake.ground_truth():
            fake.add_messages(session, 90)
        assert sync_website(client, fake.website_id, store).complete
        yield fake, client, store, EventApplier(store, {fake.website_id}, lambda *_: None), path


def test_a_confirmation_keeps_what_an_event_touched_meanwhile() -> None:
    touched = Touched()
    touched.note("w", "a", 1)
    touched.note("w", "b")
    seen = touched.of_website("w")
    touched.note("w", "a", 2)  # touched again while being read
    touched.confirm("w", seen)
    assert list(touched.of_website("w")) == ["a"]
    assert touched.of_website("w")["a"].fingerprints == {1, 2}
    for fingerprint in range(MAX_NAMED_MESSAGES + 1):
        touched.note("w", "c", fingerprint)
    assert touched.of_website("w")["c"].full
    touched.keep_only([])
    assert len(touched) == 0


def test_wrong_events_applied_in_process_are_repaired_at_a_known_cost(copy: Copy) -> None:
    fake, client, store, applier, path = copy
    website = fake.website_id
    first, second, third = list(fake.ground_truth().items())
    oldest = first[1].messages[0]["fingerprint"]
    touched = Touched()
    wrong: list[tuple[str, dict[str, Any]]] = [
        ("message:updated", {"session_id": first[0], "fingerprint": oldest,
                             "content": "an edit replayed from long ago"}),
        ("session:set_state", {"session_id": second[0], "state": "no-such-state"}),
        ("message:removed", {"session_id": third[0],
                             "fingerprint": third[1].messages[-50]["fingerprint"]}),
    ]
    for name, data in wrong:
        event = {**data, "website_id": website}
        assert applier.apply(name, event) is not None
        target = applier.target(name, event)
        assert target is not None
        touched.note(*target)
    # an event that was given up: its conversation is read in full
    gone = second[1].messages[0]["fingerprint"]
    fake.remove_message(second[0], gone)
    touched.note(website, second[0], full=True)
    assert (second[0], gone) in stored(path, website)[1]

    report = SyncReport(website, None)
    confirmed = recheck_website(client, store, report, touched.of_website(website))
    touched.confirm(website, confirmed)

    assert_exact_copy(path, fake)
    assert len(touched) == 0
    assert not report.errors
    assert report.rechecked == 3
    # the edit walks back three pages to its message; the state needs one page (back to
    # the newest message read) but the given-up event makes it read all three; the removal
    # two pages (its message is 50 back)
    assert report.recheck_calls == (1 + 3) + (1 + 3) + (1 + 2)


def event(fake: FakeCrisp, name: str, session: str, **data: Any) -> tuple[str, dict[str, Any]]:
    return name, {**data, "website_id": fake.website_id, "session_id": session}


def apply(applier: EventApplier, touched: Touched, name: str, data: dict[str, Any]) -> None:
    """As follow mode does: apply the event, then note what it touched."""
    assert applier.apply(name, data) is not None
    target = applier.target(name, data)
    assert target is not None
    touched.note(*target)


def test_what_the_reconciliations_sync_read_is_not_read_again(copy: Copy) -> None:
    """A new message and a change of state move the conversation's ``updated_at``: the sync
    reads it, and its walk meets the message. An edit of a message older than the newest page
    is not met by that walk, so that conversation is still read again (old code: every touched
    conversation read again, 2 requests for each of the first two)."""
    fake, client, store, applier, path = copy
    website = fake.website_id
    first, second, third = fake.ground_truth()
    touched = Touched()
    added = fake.add_messages(first, 1)[0]
    apply(applier, touched, *event(fake, "message:send", first, **added))
    state = "pending" if fake.ground_truth()[second].conversation["state"] == "resolved" \
        else "resolved"
    client.website.change_conversation_state(website, second, {"state": state})
    apply(applier, touched, *event(fake, "session:set_state", second, state=state))
    oldest = fake.ground_truth()[third].messages[0]["fingerprint"]
    fake.edit_message(third, oldest, "an edit far back")
    apply(applier, touched, *event(fake, "message:updated", third, fingerprint=oldest,
                                   content="an edit far back"))

    noted_before = touched.generation
    report = sync_website(client, website, store)
    assert set(report.walked) == {first, second, third}
    confirmed = recheck_website(client, store, report, touched.of_website(website),
                                noted_before=noted_before)
    touched.confirm(website, confirmed)

    assert set(confirmed) == {first, second, third}
    assert len(touched) == 0
    assert report.recheck_covered == 2
    assert report.rechecked == 1
    assert report.recheck_calls == 1 + 3  # the conversation, then its pages back to the oldest
    assert_exact_copy(path, fake)


def test_an_event_noted_after_the_sync_began_is_read_again(copy: Copy) -> None:
    """A replayed edit of the newest message lands after the sync read the conversation (and
    met that message): the sync cannot have confirmed it, so it is read again; and an event
    noted while it is read again stays for the next reconciliation."""
    fake, client, store, applier, path = copy
    website = fake.website_id
    first, second, _ = fake.ground_truth()
    touched = Touched()
    fake.add_messages(first, 1)
    fake.add_messages(second, 1)
    noted_before = touched.generation
    report = sync_website(client, website, store)
    newest = fake.ground_truth()[first].messages[-1]["fingerprint"]
    assert newest in report.walked[first].fingerprints
    apply(applier, touched, *event(fake, "message:updated", first, fingerprint=newest,
                                   content="replayed from long ago"))
    apply(applier, touched, *event(fake, "session:set_state", second, state="no-such"))
    touches = touched.of_website(website)
    apply(applier, touched, *event(fake, "session:set_state", second, state="other"))

    confirmed = recheck_website(client, store, report, touches, noted_before=noted_before)
    touched.confirm(website, confirmed)

    assert (report.rechecked, report.recheck_covered) == (2, 0)
    assert list(touched.of_website(website)) == [second]  # touched again meanwhile
    report = SyncReport(website, None)
    touched.confirm(website, recheck_website(client, store, report,
                                             touched.of_website(website),
                                             noted_before=touched.generation))
    assert (report.rechecked, len(touched)) == (1, 0)
    assert_exact_copy(path, fake)


def test_a_sync_notes_what_it_read_within_a_bound(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A first copy of a large website does not keep every fingerprint it met: past
    `MAX_WALKED`, conversations go unnoted (and are read again if events touched them)."""
    monkeypatch.setattr(engine, "MAX_WALKED", 10)
    with FakeCrisp(conversations=6, messages=4, seed=42) as fake, fake.client(
        cache_ttl=0
    ) as client, SQLiteStore(tmp_path / "bound.sqlite3") as store:
        report = sync_website(client, fake.website_id, store, workers=1)
        truth = fake.ground_truth()
    assert report.complete
    assert 0 < len(report.walked) < len(truth)
    assert sum(len(walk.fingerprints) for walk in report.walked.values()) <= 10
    for session_id, walk in report.walked.items():
        assert walk.whole
        assert walk.fingerprints == {m["fingerprint"] for m in truth[session_id].messages}
