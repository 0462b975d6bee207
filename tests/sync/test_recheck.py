"""Confirming what events touched through the REST API (`crisp_api.sync.recheck`), in
process: the fake Crisp, a real SQLite store, the real event applier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync import SQLiteStore, sync_website
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
