"""Fault injection of the fake Crisp server, set at construction, while running, and through
the admin endpoints."""

from __future__ import annotations

import base64
import http.client
import json
import time
from typing import Any

import pytest

from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp, Faults

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

AUTH = "Basic " + base64.b64encode(f"{DEFAULT_IDENTIFIER}:{DEFAULT_KEY}".encode()).decode()
HEADERS = {"Authorization": AUTH, "X-Crisp-Tier": "plugin", "Content-Type": "application/json"}
MESSAGE = {"type": "text", "content": "Only once, please", "from": "operator", "origin": "chat"}
DISCONNECTED = (http.client.HTTPException, ConnectionError)


def request(fake: FakeCrisp, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0
            ) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body),
                           headers=HEADERS if headers is None else headers)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    finally:
        connection.close()


def website_path(fake: FakeCrisp) -> str:
    return f"/v1/website/{fake.website_id}"


def message_path(fake: FakeCrisp, session_id: str) -> str:
    return f"/v1/website/{fake.website_id}/conversation/{session_id}/message"


@pytest.fixture
def fake(fake_crisp_factory):
    return fake_crisp_factory(conversations=20, messages=5, seed=11)


def test_drop_before_read_closes_without_applying(fake):
    session_id = fake.conversations()[0]["session_id"]
    before = fake.messages(session_id)
    fake.set_faults(drop_before_rate=1.0, methods={"POST"})
    with pytest.raises(DISCONNECTED):
        request(fake, "POST", message_path(fake, session_id), MESSAGE)
    assert fake.messages(session_id) == before
    assert request(fake, "GET", website_path(fake))[0] == 200
    stats = fake.stats
    assert stats.message_posts == {}
    assert stats.faults == {"drop_before": 1}
    assert stats.log[0].fault == "drop_before"


def test_drop_after_read_applies_then_closes(fake):
    session_id = fake.conversations()[0]["session_id"]
    before = fake.messages(session_id)
    fake.set_faults(drop_after_rate=1.0, routes={"send_message_in_conversation"})
    with pytest.raises(DISCONNECTED):
        request(fake, "POST", message_path(fake, session_id), MESSAGE)
    after = fake.messages(session_id)
    assert len(after) == len(before) + 1
    assert after[-1]["content"] == MESSAGE["content"]
    assert fake.stats.message_posts == {session_id: 1}
    with pytest.raises(DISCONNECTED):
        request(fake, "POST", message_path(fake, session_id), MESSAGE)
    assert fake.stats.message_posts == {session_id: 2}


@pytest.mark.parametrize(("html", "content_type"), [
    (1.0, "text/html"), (0.0, "application/json; charset=utf-8"),
])
def test_server_errors_html_or_json_and_not_applied(fake, html, content_type):
    session_id = fake.conversations()[0]["session_id"]
    fake.set_faults(error_rate=1.0, html_error_ratio=html)
    statuses = set()
    for _ in range(12):
        status, headers, body = request(fake, "POST", message_path(fake, session_id), MESSAGE)
        statuses.add(status)
        assert headers["content-type"] == content_type
        if html:
            assert body.startswith(b"<html>")
        else:
            assert json.loads(body)["error"] is True
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1
    assert fake.stats.message_posts == {}
    assert fake.stats.faults == {"error": 12}


@pytest.mark.parametrize("status", [429, 420])
def test_throttling_answers_retry_after(fake, status):
    fake.set_faults(throttle_rate=1.0, throttle_statuses=(status,), retry_after=7)
    answered, headers, body = request(fake, "GET", website_path(fake))
    assert answered == status
    assert headers["retry-after"] == "7"
    assert json.loads(body) == {"error": True, "reason": "rate_limited", "data": {}}


def test_token_bucket_refuses_when_empty_and_refills(fake):
    fake.set_faults(bucket_rate=2.0, bucket_burst=3)
    statuses = [request(fake, "GET", website_path(fake))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, headers, _ = request(fake, "GET", website_path(fake))
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert fake.stats.faults == {"bucket": 2}
    time.sleep(0.6)
    assert request(fake, "GET", website_path(fake))[0] == 200


def test_token_bucket_keys_by_token(fake_crisp_factory):
    fake = fake_crisp_factory(conversations=3, faults=Faults(bucket_rate=0.1, bucket_burst=1))
    assert request(fake, "GET", website_path(fake))[0] == 200
    assert request(fake, "GET", website_path(fake))[0] == 429
    fake.set_faults(bucket_rate=0.1, bucket_burst=1)
    websites = request(fake, "GET", "/v1/plugin/connect/websites/all/1")
    token = json.loads(websites[2])["data"][0]["token"]
    other = base64.b64encode(f"{token['identifier']}:{token['key']}".encode()).decode()
    headers = {"Authorization": "Basic " + other, "X-Crisp-Tier": "plugin"}
    assert request(fake, "GET", website_path(fake), headers=headers)[0] == 200
    assert request(fake, "GET", website_path(fake), headers=headers)[0] == 429


def test_latency_fixed_and_range(fake):
    fake.set_faults(latency_ms=150)
    started = time.perf_counter()
    assert request(fake, "GET", website_path(fake))[0] == 200
    assert time.perf_counter() - started >= 0.14
    fake.set_faults(latency_ms=(100, 200))
    started = time.perf_counter()
    assert request(fake, "GET", website_path(fake))[0] == 200
    assert time.perf_counter() - started >= 0.09


def test_slow_body_trickles_a_complete_answer(fake):
    fake.set_faults(slow_body_rate=1.0, slow_chunk_bytes=16, slow_chunk_delay_ms=20)
    started = time.perf_counter()
    status, headers, body = request(fake, "GET", website_path(fake))
    elapsed = time.perf_counter() - started
    assert status == 200
    assert json.loads(body)["data"]["website_id"] == fake.website_id
    assert int(headers["content-length"]) == len(body)
    assert elapsed >= (len(body) // 16 - 1) * 0.02 * 0.8
    assert fake.stats.faults == {"slow_body": 1}


def test_hang_never_answers_and_does_not_apply(fake):
    session_id = fake.conversations()[0]["session_id"]
    before = fake.messages(session_id)
    fake.set_faults(hang_rate=1.0)
    with pytest.raises(TimeoutError):
        request(fake, "POST", message_path(fake, session_id), MESSAGE, timeout=0.3)
    fake.set_faults()
    assert request(fake, "GET", website_path(fake))[0] == 200
    assert fake.messages(session_id) == before
    assert fake.stats.faults == {"hang": 1}


def test_faults_only_hit_matching_methods_and_routes(fake):
    fake.set_faults(error_rate=1.0, methods={"post"})
    assert request(fake, "GET", website_path(fake))[0] == 200
    assert request(fake, "POST", website_path(fake) + "/conversation", {})[0] >= 500
    fake.set_faults(error_rate=1.0, routes={"/website/{website_id}"})
    assert request(fake, "GET", website_path(fake))[0] >= 500
    assert request(fake, "GET", website_path(fake) + "/operators/list")[0] == 200


def test_budget_caps_injected_faults(fake):
    fake.set_faults(error_rate=1.0, budget=2)
    statuses = [request(fake, "GET", website_path(fake))[0] for _ in range(4)]
    assert [status >= 500 for status in statuses] == [True, True, False, False]


def test_fault_sequence_is_reproducible(fake_crisp_factory):
    faults = Faults(error_rate=0.3, throttle_rate=0.2, seed=5)

    def statuses():
        fake = fake_crisp_factory(conversations=2, faults=faults)
        return [request(fake, "GET", website_path(fake))[0] for _ in range(25)]

    first = statuses()
    assert first == statuses()
    assert {200, 429} <= set(first) or {200, 420} <= set(first)


def test_faults_change_while_running(fake):
    assert fake.faults == Faults()
    fake.set_faults(Faults(error_rate=1.0, error_statuses=(503,)))
    assert request(fake, "GET", website_path(fake))[0] == 503
    fake.update_faults(error_statuses=(502,))
    assert fake.faults.error_rate == 1.0
    assert request(fake, "GET", website_path(fake))[0] == 502
    fake.set_faults()
    assert request(fake, "GET", website_path(fake))[0] == 200


def test_admin_endpoints_control_faults_and_are_never_faulted(fake):
    fake.set_faults(error_rate=1.0)
    status, _, body = request(fake, "GET", "/_fake/faults")
    assert status == 200
    assert json.loads(body)["data"]["error_rate"] == 1.0
    status, _, body = request(fake, "PUT", "/_fake/faults", {"throttle_rate": 1.0,
                                                             "retry_after": 3})
    assert status == 200
    assert fake.faults == Faults(throttle_rate=1.0, retry_after=3)
    assert request(fake, "GET", website_path(fake))[1]["retry-after"] == "3"
    assert request(fake, "PATCH", "/_fake/faults", {"retry_after": 4})[0] == 200
    assert fake.faults == Faults(throttle_rate=1.0, retry_after=4)
    assert request(fake, "POST", "/_fake/faults", {"error_rate": 2})[0] == 400
    assert request(fake, "POST", "/_fake/faults", {"colour": 1})[0] == 400
    assert request(fake, "POST", "/_fake/faults", {})[0] == 200
    assert fake.faults == Faults()
    assert request(fake, "GET", website_path(fake))[0] == 200


def test_admin_stats_activity_and_truth(fake):
    request(fake, "GET", website_path(fake))
    stats = json.loads(request(fake, "GET", "/_fake/stats")[2])["data"]
    assert stats["requests"] == 1
    assert stats["routes"] == [["GET", "/website/{website_id}", 1]]
    assert request(fake, "DELETE", "/_fake/stats")[0] == 200
    assert fake.stats.requests == 0
    session_id = fake.conversations()[-1]["session_id"]
    added = json.loads(request(fake, "POST", "/_fake/messages",
                               {"session_id": session_id, "content": "hey"})[2])["data"]
    assert fake.messages(session_id)[-1] == added
    created = json.loads(request(fake, "POST", "/_fake/conversations", {"count": 2})[2])
    touched = json.loads(request(fake, "POST", "/_fake/touch", {"count": 3})[2])
    assert len(created["data"]["session_ids"]) == 2
    assert len(touched["data"]["session_ids"]) == 3
    truth = json.loads(request(fake, "GET", "/_fake/truth")[2])["data"]
    assert truth[session_id]["messages"][-1] == added
    assert request(fake, "POST", "/_fake/messages", {"session_id": "nope"})[0] == 404
    assert request(fake, "GET", "/_fake/nothing")[0] == 404
    assert fake.stats.requests == 0


def test_faults_validation_and_json_round_trip():
    with pytest.raises(ValueError, match="add up"):
        Faults(error_rate=0.6, drop_after_rate=0.6)
    with pytest.raises(ValueError, match="within"):
        Faults(hang_rate=-0.1)
    with pytest.raises(ValueError, match="429"):
        Faults(throttle_statuses=(503,))
    faults = Faults(latency_ms=(5, 10), methods={"post", "GET"}, routes=["get_website"],
                    bucket_rate=3, budget=4)
    assert faults.methods == frozenset({"POST", "GET"})
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults
