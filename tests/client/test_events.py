"""`crisp_api.events`: Crisp's RTM events, against the fake's real Socket.IO server."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from crisp_api import (
    Crisp,
    Event,
    EventsTimeoutError,
    EventStream,
    EventsUnauthorizedError,
    UnauthorizedError,
)
from crisp_api.events import EVENTS, _socketio
from crisp_api.testing import FakeCrisp

FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1, "connect_timeout": 3.0}
"""Stream options for tests: reconnect at once, give up on a silent server soon."""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    """One fake for the tests that only add data (each reads the events of its own change)."""
    with FakeCrisp(conversations=20, messages=3, people=6, seed=11) as server:
        yield server


@pytest.fixture
def streams() -> Iterator[list[EventStream]]:
    """Streams to close after the test, whatever happens."""
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_stream(fake: FakeCrisp, streams: list[EventStream], names: list[str],
                **options: Any) -> EventStream:
    stream = fake.client().events(names, **{**FAST, **options})
    streams.append(stream)
    return stream


def client_with(fake: FakeCrisp, *, key: str | None = None, tier: str = "plugin") -> Crisp:
    client = Crisp(max_retries=0)
    client.set_rest_host(fake.url)
    client.set_tier(tier)
    client.authenticate(fake.identifier, key or fake.key)
    return client


def expect(stream: EventStream, name: str, timeout: float = 5.0) -> Event:
    event = stream.get(timeout)
    assert event is not None, f"no {name} within {timeout} s"
    assert event.name == name
    return event


def test_the_stream_discovers_the_endpoint_and_authenticates(fake, streams):
    before = time.monotonic()
    stream = open_stream(fake, streams, ["message:send"], on_state=None)
    assert stream.connected
    assert stream.endpoint == fake.rtm_url
    assert stream.events == ("message:send",)
    assert stream.reconnects == 0
    assert before <= stream.last_change <= time.monotonic()
    assert stream.get(0.05) is None


def test_a_wrong_key_is_refused_with_the_typed_error_and_no_secret(fake):
    client = client_with(fake, key="not-the-key")
    with pytest.raises(EventsUnauthorizedError) as by_discovery:
        client.events(["message:send"])
    assert isinstance(by_discovery.value.__cause__, UnauthorizedError)
    with pytest.raises(EventsUnauthorizedError) as by_socket:
        EventStream(client, ["message:send"], endpoint=fake.rtm_url).start(timeout=5)
    assert "unauthorized" in str(by_socket.value)
    for error in (by_discovery.value, by_socket.value):
        assert "not-the-key" not in str(error)
        assert "not-the-key" not in repr(error)


def test_a_token_on_the_wrong_tier_is_refused(fake):
    client = client_with(fake, tier="user")
    with pytest.raises(EventsUnauthorizedError, match="'user'"):
        EventStream(client, ["message:send"], endpoint=fake.rtm_url).start(timeout=5)
    with pytest.raises(ValueError, match="plugin tier"):
        EventStream(client, ["message:send"])  # no discovery route for that tier


def test_bad_arguments_are_refused_before_connecting(fake):
    client = fake.client()
    with pytest.raises(ValueError, match="message:updated") as unknown:
        EventStream(client, ["message:send", "message:nope"], endpoint=fake.rtm_url)
    assert "message:nope" in str(unknown.value)
    with pytest.raises(ValueError, match="sequence"):
        EventStream(client, "message:send", endpoint=fake.rtm_url)
    with pytest.raises(ValueError, match="at least one"):
        EventStream(client, [], endpoint=fake.rtm_url)
    with pytest.raises(ValueError, match="queue_size"):
        EventStream(client, ["message:send"], queue_size=0)
    with pytest.raises(ValueError, match="jitter"):
        EventStream(client, ["message:send"], jitter=1.5)
    with pytest.raises(ValueError, match="RTM endpoint"):
        EventStream(client, ["message:send"], endpoint="ftp://example.com/")
    with pytest.raises(ValueError, match="authenticate"):
        EventStream(Crisp(), ["message:send"], endpoint=fake.rtm_url)
    stream = EventStream(client, ["message:send"], endpoint=fake.rtm_url)
    with pytest.raises(ValueError, match="not an event of this stream"):
        stream.on("message:removed", print)
    with pytest.raises(RuntimeError, match="start"):
        stream.get(0)
    stream.close()
    with pytest.raises(RuntimeError, match="once"):
        stream.start()
    assert stream.get() is None  # closed: nothing more will come


def test_message_events_carry_the_whole_message(fake, streams):
    stream = open_stream(fake, streams, ["message:send", "message:received"])
    session_id = fake.conversations()[0]["session_id"]
    from_visitor = fake.add_message(session_id, content="hello from the visitor")
    from_operator = fake.add_message(session_id, content="hello back", sender="operator")
    sent = expect(stream, "message:send")
    received = expect(stream, "message:received")
    assert dict(sent.data) == from_visitor
    assert dict(received.data) == from_operator
    assert (sent.website_id, sent.session_id) == (fake.website_id, session_id)
    assert fake.messages(session_id)[-2:] == [from_visitor, from_operator]


def test_rest_edits_and_removals_of_messages_are_pushed(fake, streams):
    stream = open_stream(fake, streams, ["message:updated", "message:removed"])
    client = fake.client()
    session_id = fake.conversations()[1]["session_id"]
    fingerprint = fake.add_message(session_id, content="typo")["fingerprint"]
    client.website.update_message_in_conversation(fake.website_id, session_id, fingerprint,
                                                  {"content": "fixed"})
    client.website.remove_message_in_conversation(fake.website_id, session_id, fingerprint)
    assert dict(expect(stream, "message:updated").data) == {
        "website_id": fake.website_id, "session_id": session_id,
        "fingerprint": fingerprint, "content": "fixed"}
    assert dict(expect(stream, "message:removed").data) == {
        "website_id": fake.website_id, "session_id": session_id, "fingerprint": fingerprint}


def test_session_changes_are_pushed(fake, streams):
    names = ["session:set_state", "session:set_segments", "session:removed"]
    stream = open_stream(fake, streams, names)
    client = fake.client()
    website_id = fake.website_id
    session_id = fake.create_conversations(messages=0)[0]
    session = {"website_id": website_id, "session_id": session_id}
    assert stream.get(0.2) is None  # a new conversation is no state change
    client.website.change_conversation_state(website_id, session_id, {"state": "resolved"})
    assert dict(expect(stream, "session:set_state").data) == {**session, "state": "resolved"}
    fake.add_message(session_id)  # a visitor's message reopens it
    assert dict(expect(stream, "session:set_state").data) == {**session, "state": "unresolved"}
    client.website.update_conversation_metas(website_id, session_id, {"segments": ["vip"]})
    assert dict(expect(stream, "session:set_segments").data) == {**session,
                                                                 "segments": ["vip"]}
    client.website.update_conversation_metas(website_id, session_id, {"subject": "no event"})
    client.website.remove_conversation(website_id, session_id)
    assert dict(expect(stream, "session:removed").data) == session


def test_people_profile_changes_are_pushed(fake, streams):
    names = ["people:profile:created", "people:profile:updated", "people:profile:removed"]
    stream = open_stream(fake, streams, names)
    people = fake.client().website
    website_id = fake.website_id
    people_id = people.add_new_people_profile(
        website_id, {"email": "ada@example.com", "person": {"nickname": "Ada"}})["people_id"]
    person = {"website_id": website_id, "people_id": people_id, "email": "ada@example.com"}
    created = expect(stream, "people:profile:created")
    assert dict(created.data) == person
    assert created.session_id is None
    people.update_people_profile(website_id, people_id, {"segments": ["lead"]})
    updated = expect(stream, "people:profile:updated").data
    assert updated["update"] == people.get_people_profile(website_id, people_id)
    assert updated["update"]["segments"] == ["lead"]
    people.remove_people_profile(website_id, people_id)
    assert dict(expect(stream, "people:profile:removed").data) == person


def test_events_not_subscribed_to_are_not_delivered(fake, streams):
    stream = open_stream(fake, streams, ["message:send"])
    session_id = fake.conversations()[2]["session_id"]
    client = fake.client()
    fake.add_message(session_id, sender="operator")  # message:received
    client.website.change_conversation_state(fake.website_id, session_id, {"state": "pending"})
    wanted = fake.add_message(session_id, content="the only one")
    assert dict(expect(stream, "message:send").data) == wanted
    assert stream.get(0.2) is None


def test_the_stream_reconnects_and_authenticates_again_after_a_drop(streams):
    with FakeCrisp(conversations=3, messages=1) as fake:
        states: list[bool] = []
        stream = open_stream(fake, streams, ["message:send"], on_state=states.append)
        assert states == [True]
        session_id = fake.conversations()[0]["session_id"]
        for round_number in range(1, 3):
            connected_since = stream.last_change
            assert fake.drop_sockets() == 1
            deadline = time.monotonic() + 5
            while stream.reconnects < round_number and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stream.reconnects == round_number
            assert stream.connected
            assert stream.last_change > connected_since
            added = fake.add_message(session_id, content=f"after drop {round_number}")
            assert dict(expect(stream, "message:send").data) == added
        assert states == [True, False, True, False, True]


def test_a_moved_rtm_endpoint_is_discovered_again(streams):
    """Reconnecting to a dead RTM server keeps failing: the stream asks the REST API again."""
    with FakeCrisp(conversations=3, messages=1, seed=1) as old, \
            FakeCrisp(conversations=3, messages=1, seed=1) as new:
        client = old.client()
        stream = client.events(["message:send"], **FAST, rediscover_after=2)
        streams.append(stream)
        client.set_rest_host(new.url)  # the REST API now hands out the new RTM server
        old.stop()
        session_id = new.conversations()[0]["session_id"]
        deadline = time.monotonic() + 5
        while stream.endpoint != new.rtm_url and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.endpoint == new.rtm_url
        while not stream.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        added = new.add_message(session_id)
        assert dict(expect(stream, "message:send").data) == added


def test_start_times_out_when_nothing_answers(fake):
    with FakeCrisp(conversations=1, messages=1) as gone:
        url = gone.rtm_url
    stream = EventStream(fake.client(), ["message:send"], endpoint=url, **FAST)
    started = time.monotonic()
    with pytest.raises(EventsTimeoutError, match="cannot connect") as raised:
        stream.start(timeout=0.5)
    assert isinstance(raised.value, TimeoutError)
    assert time.monotonic() - started < 3
    assert stream.get(0) is None  # closed


def test_a_payload_that_is_not_an_object_is_dropped_with_a_warning(fake, streams):
    with structlog.testing.capture_logs() as logs:
        stream = open_stream(fake, streams, ["message:send"], logger=structlog.get_logger())
        for junk in ("text", [1, 2], None, 42):
            fake.push_event("message:send", junk)
        added = fake.add_message(fake.conversations()[3]["session_id"])
        assert dict(expect(stream, "message:send").data) == added
    dropped = [entry for entry in logs if entry["event"] == "events.payload_dropped"]
    assert [entry["payload_type"] for entry in dropped] == ["str", "list", "NoneType", "int"]
    assert all(entry["log_level"] == "warning" for entry in dropped)
    assert stream.connected


def test_callbacks_take_their_events_and_survive_their_own_errors(fake, streams):
    seen: list[Event] = []
    arrived = threading.Event()

    def broken(event: Event) -> None:
        raise RuntimeError("callback bug")

    def record(event: Event) -> None:
        seen.append(event)
        arrived.set()

    with structlog.testing.capture_logs() as logs:
        stream = open_stream(fake, streams, ["message:send", "message:received"],
                             logger=structlog.get_logger())
        stream.on("message:send", broken)
        stream.on("message:send", record)
        session_id = fake.conversations()[4]["session_id"]
        added = fake.add_message(session_id)
        assert arrived.wait(5)
        operator = fake.add_message(session_id, sender="operator")
        assert dict(expect(stream, "message:received").data) == operator  # the queue
    assert [dict(event.data) for event in seen] == [added]
    assert stream.get(0.1) is None  # message:send went to the callbacks only
    assert [entry["error"] for entry in logs
            if entry["event"] == "events.callback_failed"] == ["RuntimeError"]


def test_a_full_queue_drops_the_overflow_counted_and_logged_once(fake, streams):
    with structlog.testing.capture_logs() as logs:
        stream = open_stream(fake, streams, ["message:send"], queue_size=2,
                             overflow_wait=0.05, logger=structlog.get_logger())
        session_id = fake.conversations()[5]["session_id"]
        added = fake.add_messages(session_id, 5)
        deadline = time.monotonic() + 5
        while stream.dropped < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert stream.dropped == 3
    assert [dict(expect(stream, "message:send").data) for _ in range(2)] == added[:2]
    assert len([entry for entry in logs if entry["event"] == "events.queue_full"]) == 1


def test_iteration_blocks_and_ends_with_close(fake):
    with fake.client().events(["message:send"], **FAST) as stream:
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(e.name for e in stream))
        reader.start()
        fake.add_messages(fake.conversations()[6]["session_id"], 2)
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    reader.join(5)
    assert not reader.is_alive()
    assert seen == ["message:send", "message:send"]
    assert not stream.connected
    stream.close()  # idempotent


def test_events_arrive_in_order_within_a_second_at_200_per_second(streams):
    """The delay from the fake's change to the iterator, at a steady ~200 changes/s."""
    rate, count = 200.0, 400
    with FakeCrisp(conversations=10, messages=1) as fake:
        session_ids = [c["session_id"] for c in fake.conversations()]
        for session_id in session_ids:  # each has a message to edit, before the stream
            fake.add_message(session_id)
        stream = open_stream(fake, streams, ["message:send", "message:received",
                                             "message:updated"])
        sent_at: dict[tuple[str, int], float] = {}
        received: list[Event] = []
        reader = threading.Thread(
            target=lambda: received.extend(stream.get(10) for _ in range(count)))
        reader.start()
        started = time.monotonic()
        for number in range(count):
            time.sleep(max(0.0, started + number / rate - time.monotonic()))
            session_id = session_ids[number % len(session_ids)]
            if number % 4 == 3:  # every fourth change edits the message before it
                fingerprint = fake.messages(session_id)[-1]["fingerprint"]
                fake.edit_message(session_id, fingerprint, f"edit {number}")
            else:
                fingerprint = fake.add_message(
                    session_id, sender="user" if number % 2 else "operator")["fingerprint"]
            sent_at[("message:updated" if number % 4 == 3 else "any", fingerprint)] = (
                time.monotonic())
        reader.join(15)
    assert len(received) == count
    assert all(event is not None for event in received)
    delays = []
    for event in received:
        assert event is not None
        key = ("message:updated" if event.name == "message:updated" else "any",
               event.data["fingerprint"])
        delays.append(event.received_at - sent_at[key])
    order = [event.data["fingerprint"] for event in received if event is not None
             and event.name != "message:updated"]
    assert order == sorted(order)  # fingerprints grow with each new message
    median = statistics.median(delays)
    p95 = statistics.quantiles(delays, n=20)[-1]
    print(f"\nRTM delay at {rate:.0f} events/s: median {median * 1000:.2f} ms, "
          f"p95 {p95 * 1000:.2f} ms, max {max(delays) * 1000:.2f} ms")
    assert median < 1.0


def test_the_event_delay_fault_holds_events_back(streams):
    with FakeCrisp(conversations=2, messages=1) as fake:
        stream = open_stream(fake, streams, ["message:send"])
        fake.set_faults(event_delay_ms=200)
        changed = time.monotonic()
        fake.add_message(fake.conversations()[0]["session_id"])
        assert expect(stream, "message:send").received_at - changed >= 0.19


def test_the_events_extra_is_named_when_missing(fake, monkeypatch):
    _socketio.cache_clear()
    monkeypatch.setitem(sys.modules, "socketio", None)
    try:
        with pytest.raises(ImportError, match=r"crisp-api-next\[events\]"):
            EventStream(fake.client(), ["message:send"], endpoint=fake.rtm_url)
    finally:
        _socketio.cache_clear()


def test_every_known_event_is_one_the_fake_pushes():
    assert {"message:send", "message:received", "message:updated", "message:removed",
            "session:set_state", "session:set_segments", "session:removed",
            "people:profile:created", "people:profile:updated",
            "people:profile:removed"} == EVENTS
