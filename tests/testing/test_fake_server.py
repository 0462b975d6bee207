"""The fake Crisp server's API behaviour, over real sockets with http.client."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from crisp_api.testing import DEFAULT_KEY, FakeCrisp
from crisp_api.testing.handlers import HANDLERS
from crisp_api.testing.routes import load_routes
from crisp_api.testing.world import World
from tests import fake_http
from tests.fake_http import AUTH, Reply

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

HEADERS = {"Authorization": AUTH, "X-Crisp-Tier": "plugin"}
CONVERSATIONS = "/website/{w}/conversations/{page}"


def call(fake: FakeCrisp, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None, prefix: str = "/v1") -> Reply:
    """`fake_http.call` on a path below ``prefix``."""
    return fake_http.call(fake, method, prefix + path, body,
                          HEADERS if headers is None else headers)


def iso(milliseconds: int, offset_hours: int = 0) -> str:
    """An ISO 8601 query value (``Z`` or ``+HH:MM``, escaped) for an epoch-ms instant."""
    zone = timezone(timedelta(hours=offset_hours))
    moment = datetime.fromtimestamp(milliseconds / 1000, tz=zone)
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z").replace("+", "%2B")


@pytest.fixture(scope="module")
def fake():
    """A read-only fake shared by the tests that change nothing."""
    with FakeCrisp(conversations=120, messages=30, seed=7) as server:
        yield server


@pytest.fixture
def fresh(fake_crisp_factory):
    return fake_crisp_factory(conversations=60, messages=30, seed=3)


def session_with(fake: FakeCrisp, predicate) -> str:
    for session_id, truth in fake.ground_truth().items():
        if predicate(len(truth.messages)):
            return session_id
    raise AssertionError("no conversation matches")


# Envelope, routing and authentication


def test_success_envelope_and_content_type(fake):
    reply = call(fake, "GET", f"/website/{fake.website_id}")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.json == {"error": False, "reason": "resolved", "data": {
        "website_id": fake.website_id, "name": "Site 1", "domain": "site-1.example.com",
        "logo": ""}}


@pytest.mark.parametrize("path", ["/nope", "/websites", "/website/x/conversations/1/extra"])
def test_unknown_route_is_route_not_found(fake, path):
    reply = call(fake, "GET", path)
    assert reply.status == 404
    assert reply.json == {"error": True, "reason": "route_not_found", "data": {}}


def test_path_outside_v1_is_route_not_found(fake):
    assert call(fake, "GET", f"/website/{fake.website_id}", prefix="").status == 404
    assert call(fake, "GET", f"/v2/website/{fake.website_id}", prefix="").status == 404


def test_known_path_with_wrong_method(fake):
    reply = call(fake, "PUT", f"/website/{fake.website_id}")
    assert reply.status == 405
    assert reply.json["reason"] == "method_not_allowed"
    assert set(reply.headers["allow"].split(", ")) == {"GET", "DELETE"}


def test_unknown_website_is_not_found(fake):
    reply = call(fake, "GET", "/website/00000000-0000-0000-0000-000000000000/conversations/1")
    assert reply.status == 404
    assert reply.json == {"error": True, "reason": "not_found", "data": {}}


def test_percent_encoded_path_parameters_are_decoded(fresh):
    session_id = fresh.conversations()[0]["session_id"]
    encoded = session_id.replace("_", "%5F")
    reply = call(fresh, "GET", f"/website/{fresh.website_id}/conversation/{encoded}")
    assert reply.data["session_id"] == session_id


@pytest.mark.parametrize("headers", [
    {},
    {"X-Crisp-Tier": "plugin"},
    {"Authorization": AUTH},
    {"Authorization": AUTH, "X-Crisp-Tier": "admin"},
    {"Authorization": "Basic " + base64.b64encode(b"fake-identifier:wrong").decode(),
     "X-Crisp-Tier": "plugin"},
    {"Authorization": "Bearer fake-key", "X-Crisp-Tier": "plugin"},
    {"Authorization": "Basic %%%", "X-Crisp-Tier": "plugin"},
])
def test_missing_or_wrong_credentials_or_tier_are_unauthorized(fake, headers):
    reply = call(fake, "GET", f"/website/{fake.website_id}", headers=headers)
    assert reply.status == 401
    assert reply.json == {"error": True, "reason": "unauthorized", "data": {}}


def test_tokens_only_pass_on_the_fakes_tier_website_tokens_included(fake):
    assert fake.tier == "plugin"
    for tier, status in (("user", 401), ("website", 401), ("plugin", 200), ("PLUGIN", 200)):
        reply = call(fake, "GET", f"/website/{fake.website_id}",
                     headers={"Authorization": AUTH, "X-Crisp-Tier": tier})
        assert reply.status == status, tier
    token = call(fake, "GET", "/plugin/connect/websites/all/1").data[0]["token"]
    website_auth = base64.b64encode(f"{token['identifier']}:{token['key']}".encode()).decode()
    for tier, status in (("website", 401), ("plugin", 200)):
        reply = call(fake, "GET", f"/website/{fake.website_id}",
                     headers={"Authorization": "basic " + website_auth, "X-Crisp-Tier": tier})
        assert reply.status == status, tier


def test_a_fake_on_another_tier_refuses_the_plugin_tier(fake_crisp_factory):
    fake = fake_crisp_factory(conversations=1, messages=1, tier="user", rtm=False)
    user = {"Authorization": AUTH, "X-Crisp-Tier": "user"}
    assert call(fake, "GET", f"/website/{fake.website_id}", headers=user).status == 200
    assert call(fake, "GET", f"/website/{fake.website_id}").status == 401
    assert fake.client().get_tier() == "user"
    with pytest.raises(ValueError, match="tier"):
        FakeCrisp(tier="admin")


def test_plugin_connect_routes_need_the_plugin_tier(fake_crisp_factory):
    fake = fake_crisp_factory(conversations=1, messages=1, tier="user", rtm=False)
    reply = call(fake, "GET", "/plugin/connect/account",
                 headers={"Authorization": AUTH, "X-Crisp-Tier": "user"})
    assert reply.status == 403
    assert reply.json["reason"] == "not_allowed"


def test_handlers_only_cover_catalogue_routes():
    catalogue = {(route.method, route.template) for route in load_routes()}
    assert set(HANDLERS) <= catalogue


def test_every_catalogue_route_answers(fresh):
    website = fresh.website_id
    session_id = fresh.conversations()[0]["session_id"]
    fingerprint = fresh.messages(session_id)[-1]["fingerprint"]
    people_id = call(fresh, "GET", f"/website/{website}/people/profiles/1").data[0]["people_id"]
    user_id = call(fresh, "GET", f"/website/{website}/operators/list").data[0]["details"][
        "user_id"]
    values = {"website_id": website, "session_id": session_id, "people_id": people_id,
              "page_number": "1", "fingerprint": str(fingerprint), "user_id": user_id}
    # Removals last, the most specific first, so that each still finds what it removes.
    routes = sorted(load_routes(),
                    key=lambda route: (route.method == "DELETE", -len(route.template)))
    for route in routes:
        path = re.sub(r"\{(\w+)\}", lambda found: values.get(found.group(1), "x"),
                      route.template)
        reply = call(fresh, route.method, path, body=b"{}")
        assert reply.status in (200, 206, 400), (route, reply)
        if route.method != "HEAD" and (route.method, route.template) not in HANDLERS:
            assert reply.status == 200, (route, reply)
            assert reply.data in ([[]] if route.lists else [{}, []]), route


def test_head_answers_status_only(fake):
    session_id = fake.conversations()[0]["session_id"]
    ok = call(fake, "HEAD", f"/website/{fake.website_id}/conversation/{session_id}")
    missing = call(fake, "HEAD", f"/website/{fake.website_id}/conversation/session_nope")
    assert (ok.status, ok.body) == (200, b"")
    assert (missing.status, missing.body) == (404, b"")
    assert call(fake, "HEAD", f"/website/{fake.website_id}").status == 200


# Paging conversations


def test_conversations_are_paged_newest_first(fake):
    truth = [conversation["session_id"] for conversation in fake.conversations()]
    pages = []
    for page in range(1, 8):
        items = call(fake, "GET", CONVERSATIONS.format(w=fake.website_id, page=page)).data
        pages.append(items)
    assert [len(items) for items in pages] == [20, 20, 20, 20, 20, 20, 0]
    listed = [item for items in pages for item in items]
    assert [item["session_id"] for item in listed] == truth
    stamps = [item["updated_at"] for item in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_per_page_bounds(fake):
    path = CONVERSATIONS.format(w=fake.website_id, page=1)
    assert len(call(fake, "GET", path + "?per_page=50").data) == 50
    assert len(call(fake, "GET", path + "?per_page=20").data) == 20
    assert len(call(fake, "GET", CONVERSATIONS.format(w=fake.website_id, page=3)
                    + "?per_page=50").data) == 20
    for bad in ("19", "51", "0", "abc", "-20"):
        reply = call(fake, "GET", path + "?per_page=" + bad)
        assert reply.status == 400, bad
        assert reply.json == {"error": True, "reason": "invalid_data", "data": {}}
    for bad_page in ("0", "x", "-1"):
        reply = call(fake, "GET", CONVERSATIONS.format(w=fake.website_id, page=bad_page))
        assert reply.status == 400


def test_date_filters_bound_updated_at_inclusively(fake):
    truth = fake.conversations()
    newest, oldest = truth[10]["updated_at"], truth[30]["updated_at"]
    path = CONVERSATIONS.format(w=fake.website_id, page=1)
    query = f"?per_page=50&filter_date_start={iso(oldest)}&filter_date_end={iso(newest)}"
    listed = call(fake, "GET", path + query).data
    assert [item["session_id"] for item in listed] == [c["session_id"] for c in truth[10:31]]
    with_offset = call(fake, "GET", path + f"?per_page=50&filter_date_start="
                       f"{iso(oldest, offset_hours=2)}&filter_date_end={iso(newest, 2)}").data
    assert with_offset == listed
    only_start = call(fake, "GET", path + f"?per_page=50&filter_date_start={iso(newest)}").data
    assert [item["session_id"] for item in only_start] == [c["session_id"] for c in truth[:11]]
    assert call(fake, "GET", path + "?filter_date_start=yesterday").status == 400


def test_simple_filters(fake):
    path = CONVERSATIONS.format(w=fake.website_id, page=1) + "?per_page=50&"
    truth = fake.conversations()
    resolved = call(fake, "GET", path + "filter_resolved=1").data
    assert resolved
    assert [c["session_id"] for c in resolved] == [
        c["session_id"] for c in truth if c["state"] == "resolved"][:50]
    open_ones = call(fake, "GET", path + "filter_not_resolved=1").data
    assert open_ones
    assert all(c["state"] != "resolved" for c in open_ones)
    unread = call(fake, "GET", path + "filter_unread=1").data
    assert all(c["unread"]["operator"] > 0 for c in unread)
    email = truth[5]["meta"]["email"]
    found = call(fake, "GET", path + "search_query=" + email).data
    assert truth[5]["session_id"] in [c["session_id"] for c in found]
    assert all(c["meta"]["email"] == email for c in found)
    assert call(fake, "GET", path + "filter_date_end=2001-01-01T00:00:00Z").data == []


# Paging messages


def messages_path(fake, session_id, before=None):
    path = f"/website/{fake.website_id}/conversation/{session_id}/messages"
    return path if before is None else f"{path}?timestamp_before={before}"


def read_all_messages(fake, session_id):
    pages = [call(fake, "GET", messages_path(fake, session_id)).data]
    while len(pages[-1]) == 40:
        pages.append(call(fake, "GET",
                          messages_path(fake, session_id, pages[-1][0]["timestamp"])).data)
    return pages


@pytest.mark.parametrize(("count", "sizes"), [
    (0, [0]), (1, [1]), (40, [40, 0]), (80, [40, 40, 0]),
])
def test_messages_paging_edges(fake, count, sizes):
    session_id = session_with(fake, lambda n: n == count)
    pages = read_all_messages(fake, session_id)
    assert [len(page) for page in pages] == sizes
    assert [m for page in reversed(pages) for m in page] == fake.messages(session_id)


def test_messages_paging_partial_last_page(fake):
    session_id = session_with(fake, lambda n: 40 < n < 80)
    truth = fake.messages(session_id)
    pages = read_all_messages(fake, session_id)
    assert [len(page) for page in pages] == [40, len(truth) - 40]
    assert pages[0] == truth[-40:]
    assert pages[1] == truth[:-40]


def test_messages_timestamp_before_is_exclusive(fake):
    session_id = session_with(fake, lambda n: 10 < n < 40)
    truth = fake.messages(session_id)
    stamp = truth[5]["timestamp"]
    assert call(fake, "GET", messages_path(fake, session_id, stamp)).data == truth[:5]
    assert call(fake, "GET", messages_path(fake, session_id, stamp + 1)).data == truth[:6]
    assert call(fake, "GET", messages_path(fake, session_id, "soon")).status == 400


def test_message_and_conversation_shapes(fake):
    truth = fake.ground_truth()
    started = time.time() * 1000
    fingerprints = [m["fingerprint"] for t in truth.values() for m in t.messages]
    assert len(fingerprints) == len(set(fingerprints))
    for session_id, item in truth.items():
        conversation = item.conversation
        assert session_id.startswith("session_")
        assert conversation["state"] in ("pending", "unresolved", "resolved")
        assert set(conversation["meta"]) >= {"nickname", "email", "phone", "ip", "data",
                                             "avatar", "device", "segments"}
        assert conversation["unread"].keys() == {"operator", "visitor"}
        assert conversation["created_at"] <= conversation["updated_at"] < started
        stamps = [m["timestamp"] for m in item.messages]
        assert stamps == sorted(set(stamps))
        if item.messages:
            last = item.messages[-1]
            assert conversation["preview_message"]["fingerprint"] == last["fingerprint"]
            assert stamps[-1] <= conversation["updated_at"]
        for message in item.messages:
            assert message["session_id"] == session_id
            assert message["type"] in ("text", "note", "file")
            assert message["from"] in ("user", "operator")
            assert message["origin"] == "chat" or message["origin"] in (
                "email", "urn:crisp.im:contact-form:0")
            assert set(message["user"]) == {"nickname", "user_id"}
            assert message["stamped"] is True


# Writes


def send(fake, session_id, **changes):
    body = {"type": "text", "content": "Hello there", "from": "user", "origin": "chat",
            **changes}
    return call(fake, "POST", f"/website/{fake.website_id}/conversation/{session_id}/message",
                body=body)


def test_sent_message_persists_and_bumps_updated_at(fresh):
    oldest = fresh.conversations()[-1]
    session_id = oldest["session_id"]
    before = fresh.messages(session_id)
    reply = send(fresh, session_id, content="Is it persisted?")
    fingerprint = reply.data["fingerprint"]
    assert fingerprint not in {m["fingerprint"] for m in before}
    after = call(fresh, "GET", messages_path(fresh, session_id)).data
    assert after[-1]["fingerprint"] == fingerprint
    assert after[-1]["content"] == "Is it persisted?"
    assert after[-1]["timestamp"] > max((m["timestamp"] for m in before), default=0)
    first = call(fresh, "GET", CONVERSATIONS.format(w=fresh.website_id, page=1)).data[0]
    assert first["session_id"] == session_id
    assert first["updated_at"] == after[-1]["timestamp"] > oldest["updated_at"]
    assert first["last_message"] == "Is it persisted?"
    stats = fresh.stats
    assert stats.message_posts == {session_id: 1}
    assert stats.posts == 1


@pytest.mark.parametrize("change", [
    {"type": None}, {"content": None}, {"from": None}, {"origin": None}, {"content": ""},
    {"type": "mystery"}, {"from": "robot"}, {"origin": "pigeon"}, {"type": "file"},
])
def test_invalid_message_is_refused_and_not_stored(fresh, change):
    session_id = fresh.conversations()[0]["session_id"]
    body = {key: value for key, value in {
        "type": "text", "content": "x", "from": "user", "origin": "chat", **change,
    }.items() if value is not None}
    path = f"/website/{fresh.website_id}/conversation/{session_id}/message"
    reply = call(fresh, "POST", path, body=body)
    assert reply.status == 400
    assert reply.json["reason"] == "invalid_data"
    assert call(fresh, "POST", path, body=b"not json").status == 400
    assert fresh.stats.message_posts == {}


def test_file_message_and_edit_and_delete(fresh):
    session_id = fresh.conversations()[3]["session_id"]
    content = {"name": "a.png", "url": "https://example.com/a.png", "type": "image/png"}
    fingerprint = send(fresh, session_id, type="file", content=content).data["fingerprint"]
    path = f"/website/{fresh.website_id}/conversation/{session_id}/message/{fingerprint}"
    assert call(fresh, "GET", path).data["content"] == content
    assert call(fresh, "PATCH", path, body={"content": {"name": "b.png", "url": "u"}}).status \
        == 200
    edited = call(fresh, "GET", path).data
    assert (edited["content"]["name"], edited["edited"]) == ("b.png", True)
    assert call(fresh, "DELETE", path).status == 200
    assert call(fresh, "GET", path).status == 404
    assert fingerprint not in [m["fingerprint"] for m in fresh.messages(session_id)]


def test_create_get_and_delete_conversation(fresh):
    website = fresh.website_id
    session_id = call(fresh, "POST", f"/website/{website}/conversation").data["session_id"]
    conversation = call(fresh, "GET", f"/website/{website}/conversation/{session_id}").data
    assert conversation["state"] == "pending"
    assert call(fresh, "GET", messages_path(fresh, session_id)).data == []
    assert call(fresh, "GET", CONVERSATIONS.format(w=website, page=1)).data[0][
        "session_id"] == session_id
    assert send(fresh, session_id).status == 200
    assert call(fresh, "DELETE", f"/website/{website}/conversation/{session_id}").status == 200
    assert call(fresh, "HEAD", f"/website/{website}/conversation/{session_id}").status == 404
    assert call(fresh, "GET", messages_path(fresh, session_id)).status == 404
    assert session_id not in fresh.ground_truth()


def test_state_meta_and_routing_persist(fresh):
    website = fresh.website_id
    conversation = fresh.conversations()[-1]
    base = f"/website/{website}/conversation/{conversation['session_id']}"
    assert call(fresh, "PATCH", base + "/state", body={"state": "resolved"}).status == 200
    assert call(fresh, "GET", base + "/state").data == {"state": "resolved"}
    assert call(fresh, "PATCH", base + "/state", body={"state": "done"}).status == 400
    meta = {"nickname": "Renamed", "data": {"plan": "pro"}, "segments": ["vip"]}
    assert call(fresh, "PATCH", base + "/meta", body=meta).status == 200
    stored = call(fresh, "GET", base + "/meta").data
    assert {key: stored[key] for key in meta} == meta
    assert call(fresh, "PATCH", base + "/meta", body={"colour": "red"}).status == 400
    assert call(fresh, "PATCH", base + "/meta", body={"nickname": 3}).status == 400
    operator = call(fresh, "GET", f"/website/{website}/operators/list").data[1]
    user_id = operator["details"]["user_id"]
    assert call(fresh, "PATCH", base + "/routing",
                body={"assigned": {"user_id": user_id}}).status == 200
    assert call(fresh, "GET", base + "/routing").data == {"assigned": {"user_id": user_id}}
    assert call(fresh, "PATCH", base + "/block", body={"blocked": True}).status == 200
    now = call(fresh, "GET", base).data
    assert (now["state"], now["meta"]["nickname"], now["is_blocked"]) == (
        "resolved", "Renamed", True)
    assert now["updated_at"] > conversation["updated_at"]


def test_people_profiles_lifecycle(fresh):
    website = fresh.website_id
    profiles = call(fresh, "GET", f"/website/{website}/people/profiles/1").data
    assert len(profiles) == 20
    assert {"people_id", "email", "person", "company", "segments", "active", "created_at",
            "updated_at"} <= set(profiles[0])
    body = {"email": "new.person@example.com", "person": {"nickname": "New Person"}}
    people_id = call(fresh, "POST", f"/website/{website}/people/profile",
                     body=body).data["people_id"]
    duplicate = call(fresh, "POST", f"/website/{website}/people/profile", body=body)
    assert duplicate.status == 409
    assert call(fresh, "POST", f"/website/{website}/people/profile", body={}).status == 400
    path = f"/website/{website}/people/profile/{people_id}"
    assert call(fresh, "GET", path).data["person"]["nickname"] == "New Person"
    assert call(fresh, "GET", f"/website/{website}/people/profile/new.person@example.com"
                ).data["people_id"] == people_id
    assert call(fresh, "PATCH", path, body={"person": {"phone": "+1"}}).status == 200
    person = call(fresh, "GET", path).data["person"]
    assert (person["nickname"], person["phone"]) == ("New Person", "+1")
    assert call(fresh, "PUT", path, body={"email": "saved@example.com"}).status == 200
    saved = call(fresh, "GET", path).data
    assert (saved["email"], saved["person"]["nickname"]) == ("saved@example.com", "")
    assert call(fresh, "DELETE", path).status == 200
    assert call(fresh, "HEAD", path).status == 404


def test_people_conversations_list(fake):
    first = fake.conversations()[0]
    path = f"/website/{fake.website_id}/people/conversations/{first['people_id']}/list/1"
    sessions = call(fake, "GET", path).data
    assert first["session_id"] in sessions
    owned = [c["session_id"] for c in fake.conversations() if
             c["people_id"] == first["people_id"]]
    assert sessions == owned[:20]


def test_operators_visitors_and_plugin_routes(fake):
    website = fake.website_id
    operators = call(fake, "GET", f"/website/{website}/operators/list").data
    assert [o["type"] for o in operators] == ["owner", "member", "member"]
    assert {"user_id", "email", "first_name", "last_name", "role", "title",
            "availability"} <= set(operators[0]["details"])
    visitors = call(fake, "GET", f"/website/{website}/visitors/list/1").data
    assert len(visitors) == call(fake, "GET", f"/website/{website}/visitors/count").data[
        "count"]
    assert call(fake, "GET", "/plugin/connect/account").data == {"plugin_id": fake.plugin_id}
    assert call(fake, "HEAD", "/plugin/connect/session").status == 200
    connected = call(fake, "GET", "/plugin/connect/websites/all/1").data
    assert [item["website_id"] for item in connected] == [website]
    assert set(connected[0]) == {"website_id", "token", "settings"}
    assert call(fake, "GET", "/plugin/connect/websites/all/2").data == []
    since = "/plugin/connect/websites/since?date_since="
    assert len(call(fake, "GET", since + "2000-01-01T00:00:00Z").data) == 1
    assert call(fake, "GET", since + iso(int(time.time() * 1000))).data == []
    assert call(fake, "GET", "/plugin/connect/websites/since").status == 400


# Counters, log, connections


def test_counters_and_request_log(fresh):
    website = fresh.website_id
    call(fresh, "GET", CONVERSATIONS.format(w=website, page=2) + "?per_page=30",
         headers={**HEADERS, "User-Agent": "probe/1"})
    call(fresh, "GET", CONVERSATIONS.format(w=website, page=3))
    call(fresh, "POST", f"/website/{website}/conversation", body={})
    call(fresh, "GET", "/nope")
    stats = fresh.stats
    assert stats.requests == 4
    assert stats.posts == 1
    assert stats.count("GET", "/website/{website_id}/conversations/{page_number}") == 2
    assert stats.statuses == {200: 3, 404: 1}
    first = stats.log[0]
    assert first.target == f"/v1/website/{website}/conversations/2?per_page=30"
    assert first.header("user-agent") == "probe/1"
    assert first.header("Authorization") == "Basic <redacted>"
    assert DEFAULT_KEY not in repr(stats)
    assert stats.log[2].body == b"{}"
    fresh.reset_stats()
    assert fresh.stats.requests == 0
    assert fresh.stats.log == ()


def test_request_log_is_bounded(fake_crisp_factory):
    small = fake_crisp_factory(conversations=5, log_size=3)
    for page in range(1, 6):
        call(small, "GET", CONVERSATIONS.format(w=small.website_id, page=page))
    stats = small.stats
    assert stats.requests == 5
    assert [entry.target[-1] for entry in stats.log] == ["3", "4", "5"]


def test_keep_alive_serves_many_requests_on_one_connection(fake):
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        for page in range(1, 30):
            connection.request("GET", "/v1" + CONVERSATIONS.format(w=fake.website_id,
                                                                   page=page), headers=HEADERS)
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("connection") == "keep-alive"
            response.read()
        assert connection.sock is not None
    finally:
        connection.close()


def raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_connection_close_and_http10_close_after_answer(fake):
    request = (f"GET /v1/website/{fake.website_id} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: {AUTH}\r\nX-Crisp-Tier: plugin\r\nConnection: close\r\n\r\n")
    answer = raw_exchange(fake.port, request.encode())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in answer
    old = request.replace("HTTP/1.1", "HTTP/1.0").replace("Connection: close\r\n", "")
    assert raw_exchange(fake.port, old.encode()).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(("payload", "status"), [
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
    (b"POST /v1/website HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
    (b"POST /v1/website HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
])
def test_malformed_requests_are_refused(fake, payload, status):
    assert raw_exchange(fake.port, payload).startswith(b"HTTP/1.1 " + status)


def test_body_split_across_packets(fresh):
    session_id = fresh.conversations()[0]["session_id"]
    body = json.dumps({"type": "text", "content": "split", "from": "operator",
                       "origin": "chat"}).encode()
    head = (f"POST /v1/website/{fresh.website_id}/conversation/{session_id}/message HTTP/1.1\r\n"
            f"Authorization: {AUTH}\r\nX-Crisp-Tier: plugin\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", fresh.port), timeout=5) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.05)
        sock.sendall(body[10:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert fresh.messages(session_id)[-1]["content"] == "split"


# Data, helpers and lifecycle


def test_same_seed_same_data_and_different_seed_different_data():
    def world(seed):
        return World(conversations=30, messages=10, seed=seed, now_ms=1_700_000_000_000)

    first, again, other = world(5), world(5), world(6)
    assert first.website_id == again.website_id != other.website_id
    assert first.truth() == again.truth()
    assert first.truth() != other.truth()
    assert world(5).website_id == World(conversations=3, seed=5).website_id


def test_ten_thousand_conversations_start_fast():
    started = time.perf_counter()
    with FakeCrisp(conversations=10_000, messages=30, seed=2) as big:
        reply = call(big, "GET", CONVERSATIONS.format(w=big.website_id, page=500))
        assert len(reply.data) == 20
    assert time.perf_counter() - started < 5.0


def test_several_websites(fake_crisp_factory):
    fake = fake_crisp_factory(websites=3, conversations=10)
    assert len(fake.website_ids) == 3
    assert fake.website_ids[0] == fake.website_id
    for website in fake.website_ids:
        assert len(call(fake, "GET", CONVERSATIONS.format(w=website, page=1)).data) == 10
    assert len(call(fake, "GET", "/plugin/connect/websites/all/1").data) == 3


def test_activity_helpers_change_the_truth(fresh):
    before = fresh.conversations()
    oldest = before[-1]["session_id"]
    message = fresh.add_message(oldest, content="live", sender="operator")
    assert fresh.messages(oldest)[-1] == message
    assert fresh.conversations()[0]["session_id"] == oldest
    created = fresh.create_conversations(2, messages=3)
    truth = fresh.ground_truth()
    assert dict(fresh.iter_ground_truth()) == truth
    assert list(truth) == [c["session_id"] for c in fresh.conversations()]
    assert all(len(truth[session_id].messages) == 3 for session_id in created)
    touched = fresh.touch_conversations(5)
    assert len(set(touched)) == 5
    newest = [c["session_id"] for c in fresh.conversations()[:5]]
    assert set(newest) == set(touched)
    listed = call(fresh, "GET", CONVERSATIONS.format(w=fresh.website_id, page=1)).data
    assert [c["session_id"] for c in listed[:5]] == newest
    with pytest.raises(KeyError):
        fresh.add_message("session_missing")
    with pytest.raises(KeyError):
        fresh.conversations(website_id="nope")


def test_fixture_serves_and_stop_is_clean(fake_crisp):
    assert call(fake_crisp, "GET", f"/website/{fake_crisp.website_id}").status == 200
    port = fake_crisp.port
    running = [t for t in threading.enumerate() if t.name == "fake-crisp"]
    fake_crisp.stop()
    fake_crisp.stop()
    assert len([t for t in threading.enumerate() if t.name == "fake-crisp"]) == len(running) - 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_start_fails_loudly_on_a_taken_port(fake):
    with pytest.raises(OSError, match="in use"), FakeCrisp(conversations=1, port=fake.port):
        pass
