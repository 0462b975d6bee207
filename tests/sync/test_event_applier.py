"""Every event type, from the fake's RTM socket through `EventApplier` into a real SQLite
store; applying an event twice changes nothing; other websites' events are ignored."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisp_api import Crisp, NotFoundError
from crisp_api.events import EVENTS, EventStream
from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.sync.event_applier import EventApplier, InvalidEventError
from crisp_api.sync.store import Changes
from crisp_api.testing import FakeCrisp

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

Live = tuple[FakeCrisp, Crisp, SQLiteStore, EventStream, EventApplier]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with FakeCrisp(conversations=5, messages=3, seed=12) as fake, fake.client(
        cache_ttl=0
    ) as client, SQLiteStore(tmp_path / "events.sqlite3") as store:
        assert sync_website(client, fake.website_id, store).complete

        def profile(website_id: str, people_id: str) -> Any:
            try:
                return client.website.get_people_profile(website_id, people_id)
            except NotFoundError:
                return None

        applier = EventApplier(store, {fake.website_id}, profile)
        with client.events(sorted(EVENTS)) as stream:
            yield fake, client, store, stream, applier


def apply_next(stream: EventStream, applier: EventApplier, name: str) -> tuple[Any, Changes]:
    """Take events until one called ``name``; apply it twice (the second changes nothing)."""
    while True:
        event = stream.get(timeout=5)
        assert event is not None, f"no {name} event came"
        if event.name == name:
            changes = applier.apply(event.name, event.data)
            assert changes is not None
            assert applier.apply(event.name, event.data) == Changes()  # idempotent
            return event.data, changes
        applier.apply(event.name, event.data)


def rows(path: Path, sql: str, *args: Any) -> list[Any]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def test_each_message_and_session_event_reaches_the_store(live: Any, tmp_path: Path) -> None:
    fake, client, store, stream, applier = live
    db = tmp_path / "events.sqlite3"
    website = fake.website_id
    session = fake.create_conversations(messages=0)[0]

    # Crisp's names are the visitor's: "send" from the visitor, "received" by the visitor.
    sent = fake.add_message(session, content="hello", sender="user")
    _, changes = apply_next(stream, applier, "message:send")
    assert changes == Changes(added=1)
    received = fake.add_message(session, content="hi", sender="operator")
    apply_next(stream, applier, "message:received")
    client.website.update_message_in_conversation(website, session, sent["fingerprint"],
                                                  {"content": "hello!"})
    _, changes = apply_next(stream, applier, "message:updated")
    assert changes == Changes(updated=1)
    client.website.remove_message_in_conversation(website, session, received["fingerprint"])
    apply_next(stream, applier, "message:removed")
    stored = rows(db, "SELECT fingerprint, data FROM messages WHERE session_id = ?", session)
    assert [(f, json.loads(d)["content"]) for f, d in stored] == [(sent["fingerprint"], "hello!")]

    assert sync_website(client, website, store).complete  # the conversation's row, for state
    client.website.change_conversation_state(website, session, {"state": "resolved"})
    apply_next(stream, applier, "session:set_state")
    client.website.update_conversation_metas(website, session, {"segments": ["vip"]})
    apply_next(stream, applier, "session:set_segments")
    (data,) = rows(db, "SELECT data FROM conversations WHERE session_id = ?", session)[0]
    assert json.loads(data)["state"] == "resolved"
    assert json.loads(data)["segments"] == ["vip"]

    client.website.remove_conversation(website, session)
    apply_next(stream, applier, "session:removed")
    assert rows(db, "SELECT COUNT(*) FROM conversations WHERE session_id = ?", session) == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM messages WHERE session_id = ?", session) == [(0,)]


def test_each_people_event_reaches_the_store(live: Any, tmp_path: Path) -> None:
    fake, client, _, stream, applier = live
    db = tmp_path / "events.sqlite3"
    website = fake.website_id
    people_id = client.website.add_new_people_profile(
        website, {"email": "ada@example.com", "person": {"nickname": "Ada"}})["people_id"]
    apply_next(stream, applier, "people:profile:created")
    client.website.update_people_profile(website, people_id, {"segments": ["lead"]})
    apply_next(stream, applier, "people:profile:updated")
    (data,) = rows(db, "SELECT data FROM people WHERE people_id = ?", people_id)[0]
    assert json.loads(data) == client.website.get_people_profile(website, people_id)
    client.website.remove_people_profile(website, people_id)
    apply_next(stream, applier, "people:profile:removed")
    assert rows(db, "SELECT COUNT(*) FROM people WHERE people_id = ?", people_id) == [(0,)]


def test_events_of_other_websites_and_bad_payloads(live: Any) -> None:
    fake, _, _, _, applier = live
    assert applier.apply("message:send", {"website_id": "another", "session_id": "s",
                                          "fingerprint": 1, "timestamp": 1}) is None
    assert applier.ignored == 1
    for name, data in [
        ("message:send", ["not", "an", "object"]),
        ("message:send", {"website_id": fake.website_id, "session_id": "s"}),
        ("message:updated", {"website_id": fake.website_id, "session_id": "s",
                             "fingerprint": 1}),
        ("session:set_state", {"website_id": fake.website_id, "session_id": "s"}),
        ("people:profile:updated", {"website_id": fake.website_id}),
    ]:
        with pytest.raises(InvalidEventError):
            applier.apply(name, data)
    assert applier.invalid == 5
