"""The fake Crisp server behaves as Crisp really does, over real sockets: 206 while older
messages remain, messages sharing a millisecond, fingerprints repeated across conversations,
a server clock that is not the client's, and what wrong addresses answer."""

from __future__ import annotations

import http.client
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from crisp_api.testing import FakeCrisp, FakeCrispProcess
from crisp_api.testing.cli import build_parser
from tests.fake_http import HEADERS, Reply, call

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

HOUR = 3_600_000
PAGE = 40
IMF_FIXDATE = "%a, %d %b %Y %H:%M:%S GMT"


def conversation_path(fake: FakeCrisp, session_id: str) -> str:
    return f"/v1/website/{fake.website_id}/conversation/{session_id}"


def messages(fake: FakeCrisp, session_id: str, before: int | None = None) -> Reply:
    query = "" if before is None else f"?timestamp_before={before}"
    return call(fake, "GET", conversation_path(fake, session_id) + "/messages" + query)


def session_with(fake: FakeCrisp, predicate) -> str:
    for session_id, truth in fake.ground_truth().items():
        if predicate(len(truth.messages)):
            return session_id
    raise AssertionError("no conversation matches")


def iso(milliseconds: int) -> str:
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def our_now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def fake():
    """A fake shared by the tests that only read."""
    with FakeCrisp(conversations=60, messages=30, seed=5) as server:
        yield server


@pytest.fixture
def fresh(fake_crisp_factory):
    return fake_crisp_factory(conversations=12, messages=30, seed=9)


# 206 while older messages remain


def test_a_full_page_with_older_messages_answers_206(fake):
    session_id = session_with(fake, lambda count: count == 2 * PAGE)
    truth = fake.messages(session_id)
    fake.reset_stats()

    first = messages(fake, session_id)
    assert (first.status, first.reason) == (206, "Partial Content")
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert first.data == truth[PAGE:]
    last = messages(fake, session_id, first.data[0]["timestamp"])
    assert (last.status, last.reason) == (200, "OK")
    assert last.data == truth[:PAGE]
    beyond = messages(fake, session_id, last.data[0]["timestamp"])
    assert (beyond.status, beyond.data) == (200, [])

    stats = fake.stats
    assert stats.statuses == {206: 1, 200: 2}
    assert stats.successes == 3


def test_a_partial_last_page_answers_200_after_a_206(fake):
    session_id = session_with(fake, lambda count: PAGE < count < 2 * PAGE)
    first = messages(fake, session_id)
    assert (first.status, len(first.data)) == (206, PAGE)
    last = messages(fake, session_id, first.data[0]["timestamp"])
    assert last.status == 200
    assert 0 < len(last.data) < PAGE


@pytest.mark.parametrize("count", [0, 1, PAGE])
def test_a_page_reaching_the_oldest_message_answers_200(fake, count):
    session_id = session_with(fake, lambda found: found == count)
    reply = messages(fake, session_id)
    assert reply.status == 200
    assert len(reply.data) == count


def test_206_can_be_switched_off(fake_crisp_factory):
    always_200 = fake_crisp_factory(conversations=12, messages=30, seed=5,
                                    partial_status=False)
    session_id = session_with(always_200, lambda count: count == 2 * PAGE)
    first = messages(always_200, session_id)
    assert (first.status, len(first.data)) == (200, PAGE)
    assert messages(always_200, session_id, first.data[0]["timestamp"]).status == 200


def test_head_on_a_partial_page_answers_206_without_body(fake):
    session_id = session_with(fake, lambda count: count == 2 * PAGE)
    reply = call(fake, "HEAD", conversation_path(fake, session_id) + "/messages")
    assert (reply.status, reply.body) == (206, b"")


# Messages sharing one millisecond


def test_messages_sharing_a_millisecond_page_by_timestamp(fresh):
    session_id = fresh.create_conversations(messages=3)[0]
    older = fresh.messages(session_id)
    stamp = older[-1]["timestamp"] + 5
    before = fresh.conversation(session_id)["updated_at"]

    added = fresh.add_messages(session_id, 45, timestamp=stamp, content="same ms")

    assert [message["timestamp"] for message in added] == [stamp] * 45
    assert len({message["fingerprint"] for message in added}) == 45
    assert fresh.conversation(session_id)["updated_at"] > before
    excluded = messages(fresh, session_id, stamp)
    assert (excluded.status, excluded.data) == (200, older)
    included = messages(fresh, session_id, stamp + 1)
    assert included.status == 206
    assert included.data == added[-PAGE:]
    assert messages(fresh, session_id).data == added[-PAGE:]
    assert fresh.ground_truth()[session_id].messages == older + added


def test_a_tie_cannot_go_back_in_time_and_later_messages_come_after(fresh):
    session_id = fresh.create_conversations(messages=1)[0]
    newest = fresh.messages(session_id)[-1]["timestamp"]
    with pytest.raises(ValueError, match="400 invalid_data"):
        fresh.add_messages(session_id, 2, timestamp=newest - 1)
    assert len(fresh.messages(session_id)) == 1
    fresh.add_messages(session_id, 2, timestamp=newest)
    following = fresh.add_message(session_id)
    stamps = [message["timestamp"] for message in fresh.messages(session_id)]
    assert stamps == [newest, newest, newest, following["timestamp"]]
    assert following["timestamp"] > newest
    with pytest.raises(ValueError, match="count"):
        fresh.add_messages(session_id, 0)
    with pytest.raises(ValueError, match="sender"):
        fresh.add_messages(session_id, sender="robot")
    with pytest.raises(KeyError):
        fresh.add_messages("session_unknown")


# Fingerprints repeated across conversations


def test_a_fingerprint_may_repeat_across_conversations(fresh):
    first, second = fresh.create_conversations(2, messages=2)
    fingerprint = fresh.messages(first)[0]["fingerprint"]

    [copy] = fresh.add_messages(second, fingerprint=fingerprint, content="imported")

    assert copy["fingerprint"] == fingerprint
    for session_id in (first, second):
        reply = call(fresh, "GET", conversation_path(fresh, session_id)
                     + f"/message/{fingerprint}")
        assert reply.status == 200
        assert reply.data["session_id"] == session_id
    truth = fresh.ground_truth()
    for session_id in (first, second):
        assert fingerprint in [message["fingerprint"] for message in truth[session_id].messages]
    with pytest.raises(ValueError, match="409 conflict"):
        fresh.add_messages(second, fingerprint=fingerprint)
    with pytest.raises(ValueError, match="count=1"):
        fresh.add_messages(second, 2, fingerprint=fingerprint + 1)
    assert len(fresh.messages(second)) == 3


def test_a_sent_message_may_carry_its_own_fingerprint(fresh):
    first, second = fresh.create_conversations(2, messages=1)
    fingerprint = fresh.messages(first)[0]["fingerprint"]
    body = {"type": "text", "content": "from my integration", "from": "operator",
            "origin": "chat", "fingerprint": fingerprint}
    path = conversation_path(fresh, second) + "/message"

    assert call(fresh, "POST", path, body).data == {"fingerprint": fingerprint}
    again = call(fresh, "POST", path, body)
    assert again.status == 409
    assert again.json == {"error": True, "reason": "conflict", "data": {}}
    for wrong in ("12", 1.5, True, -1):
        refused = call(fresh, "POST", path, {**body, "fingerprint": wrong})
        assert (refused.status, refused.json["reason"]) == (400, "invalid_data")
    assert len(fresh.messages(second)) == 2


def test_drawn_fingerprints_never_repeat_a_chosen_one(fresh):
    session_id = fresh.create_conversations(messages=0)[0]
    drawn = fresh.add_message(session_id)["fingerprint"]
    fresh.add_messages(session_id, fingerprint=drawn + 1)
    assert fresh.add_message(session_id)["fingerprint"] not in (drawn, drawn + 1)


# Editing and removing through the helpers


def test_edit_and_remove_helpers_act_like_the_routes(fresh):
    session_id = session_with(fresh, lambda count: count > 3)
    target = fresh.messages(session_id)[1]
    fingerprint = target["fingerprint"]
    before = fresh.conversation(session_id)["updated_at"]

    edited = fresh.edit_message(session_id, fingerprint, "corrected")

    assert edited == {**target, "content": "corrected", "edited": True}
    assert call(fresh, "GET", conversation_path(fresh, session_id)
                + f"/message/{fingerprint}").data == edited
    bumped = fresh.conversation(session_id)["updated_at"]
    assert bumped > before
    with pytest.raises(ValueError, match="400 invalid_data"):
        fresh.edit_message(session_id, fingerprint, "")

    fresh.remove_message(session_id, fingerprint)

    assert fingerprint not in [message["fingerprint"] for message in fresh.messages(session_id)]
    assert call(fresh, "GET", conversation_path(fresh, session_id)
                + f"/message/{fingerprint}").status == 404
    assert fresh.conversation(session_id)["updated_at"] > bumped
    with pytest.raises(KeyError):
        fresh.remove_message(session_id, fingerprint)
    with pytest.raises(KeyError):
        fresh.edit_message(session_id, fingerprint, "gone")


def test_admin_endpoints_mirror_the_new_helpers(fresh):
    session_id = fresh.create_conversations(messages=1)[0]
    stamp = fresh.messages(session_id)[-1]["timestamp"]
    many = call(fresh, "POST", "/_fake/messages/many",
                {"session_id": session_id, "count": 3, "timestamp": stamp})
    assert [message["timestamp"] for message in many.data] == [stamp] * 3
    fingerprint = many.data[0]["fingerprint"]
    edited = call(fresh, "PATCH", "/_fake/message",
                  {"session_id": session_id, "fingerprint": fingerprint, "content": "new"})
    assert edited.data["content"] == "new"
    assert call(fresh, "DELETE", "/_fake/message",
                {"session_id": session_id, "fingerprint": fingerprint}).data == {}
    assert len(fresh.messages(session_id)) == 3
    assert call(fresh, "POST", "/_fake/messages/many",
                {"session_id": session_id, "timestamp": stamp - 1}).status == 400
    assert call(fresh, "DELETE", "/_fake/message",
                {"session_id": session_id, "fingerprint": fingerprint}).status == 404
    clock = call(fresh, "GET", "/_fake/clock").data["now_ms"]
    assert abs(clock - our_now()) < 5_000


# The server's clock is not ours


@pytest.mark.parametrize("offset", [-HOUR, HOUR])
@pytest.mark.parametrize("by_offset", [False, True], ids=["now_ms", "clock_offset_ms"])
def test_everything_lives_in_the_servers_clock(fake_crisp_factory, offset, by_offset):
    clock = {"clock_offset_ms": offset} if by_offset else {"now_ms": our_now() + offset}
    skewed = fake_crisp_factory(conversations=15, messages=5, seed=2, **clock)
    assert abs(skewed.now_ms() - (our_now() + offset)) < 5_000
    seeded = skewed.conversations()
    assert max(conversation["updated_at"] for conversation in seeded) < skewed.now_ms()

    [touched] = skewed.touch_conversations(1)
    reply = call(skewed, "GET", conversation_path(skewed, touched))
    updated_at = reply.data["updated_at"]
    server_now = skewed.now_ms()
    assert server_now - 5_000 < updated_at <= server_now
    assert skewed.messages(touched)[-1]["timestamp"] == updated_at
    assert abs(reply.date_ms - server_now) < 5_000
    assert abs(reply.date_ms - our_now()) > HOUR - 60_000
    assert reply.headers["date"] == datetime.fromtimestamp(
        reply.date_ms / 1000, tz=UTC).strftime(IMF_FIXDATE)

    listed = conversations_between(skewed, server_now - 10_000, server_now + 10_000)
    assert touched in listed
    assert touched not in conversations_between(skewed, None, server_now - 10_000)
    by_our_clock = conversations_between(skewed, our_now() - 10_000, None)
    assert (touched in by_our_clock) is (offset > 0)


def conversations_between(fake: FakeCrisp, start: int | None, end: int | None) -> list[str]:
    query = "?per_page=50"
    if start is not None:
        query += f"&filter_date_start={iso(start)}"
    if end is not None:
        query += f"&filter_date_end={iso(end)}"
    reply = call(fake, "GET", f"/v1/website/{fake.website_id}/conversations/1{query}")
    return [conversation["session_id"] for conversation in reply.data]


def test_new_conversations_and_messages_follow_the_servers_clock(fake_crisp_factory):
    behind = fake_crisp_factory(conversations=5, messages=2, clock_offset_ms=-HOUR)
    created = call(behind, "POST", f"/v1/website/{behind.website_id}/conversation", {})
    session_id = created.data["session_id"]
    sent = call(behind, "POST", conversation_path(behind, session_id) + "/message",
                {"type": "text", "content": "hi", "from": "user", "origin": "chat"})
    message = call(behind, "GET", conversation_path(behind, session_id)
                   + f"/message/{sent.data['fingerprint']}").data
    conversation = behind.conversation(session_id)
    server_now = behind.now_ms()
    for stamp in (conversation["created_at"], conversation["updated_at"],
                  message["timestamp"]):
        assert server_now - 5_000 < stamp <= server_now


def test_one_clock_at_a_time():
    with pytest.raises(ValueError, match="not both"):
        FakeCrisp(now_ms=our_now(), clock_offset_ms=HOUR)


def test_every_answer_has_a_date_even_errors(fake):
    for path in ("/v1/nope", f"/v1/website/{fake.website_id}", "/_fake/info"):
        reply = call(fake, "GET", path)
        assert abs(reply.date_ms - our_now()) < 5_000


# Wrong addresses


def test_unknown_website_is_not_found(fake):
    reply = call(fake, "GET", "/v1/website/00000000-0000-0000-0000-000000000000/conversations/1")
    assert reply.status == 404
    assert reply.json == {"error": True, "reason": "not_found", "data": {}}


@pytest.mark.parametrize("base", ["/v1/v1", "/v2", "", "/api/v1"])
def test_a_wrong_base_is_route_not_found(fake, base):
    for headers in (HEADERS, {}):
        reply = call(fake, "GET", f"{base}/website/{fake.website_id}/conversations/1",
                     headers=headers)
        assert reply.status == 404
        assert reply.json == {"error": True, "reason": "route_not_found", "data": {}}


# Options of the command line and of the child process


def test_command_line_takes_the_clock_and_status_options():
    args = build_parser().parse_args(["--clock-offset-ms", "-3600000", "--no-partial-status"])
    assert (args.clock_offset_ms, args.partial_status) == (-HOUR, False)
    defaults = build_parser().parse_args([])
    assert (defaults.clock_offset_ms, defaults.partial_status) == (None, True)


def test_process_fake_takes_the_clock_and_status_options():
    with FakeCrispProcess(conversations=12, messages=30, seed=5, clock_offset_ms=HOUR,
                          partial_status=False) as child:
        assert abs(child.now_ms() - (our_now() + HOUR)) < 5_000
        session_id = next(session_id for session_id, truth in child.ground_truth().items()
                          if len(truth.messages) == 2 * PAGE)
        address = urlsplit(child.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        try:
            connection.request("GET", f"/v1/website/{child.website_id}/conversation/"
                               f"{session_id}/messages", headers=HEADERS)
            response = connection.getresponse()
            assert (response.status, len(json.loads(response.read())["data"])) == (200, PAGE)
        finally:
            connection.close()
        [added] = child.add_messages(session_id, timestamp=child.now_ms() + 1, content="x")
        assert child.edit_message(session_id, added["fingerprint"], "y")["content"] == "y"
        child.remove_message(session_id, added["fingerprint"])
        with pytest.raises(KeyError):
            child.remove_message(session_id, added["fingerprint"])
        with pytest.raises(ValueError, match="refused"):
            child.add_messages(session_id, timestamp=0)
