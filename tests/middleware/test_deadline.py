"""Deadlines and Retry-After edge cases: a call ends by its deadline whatever the server does."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import middleware.message as message_module
from crisp_api import Crisp, RateLimitedError, RequestTimeoutError, ServerError
from middleware import Response
from tests.conftest import IDENTIFIER, KEY, SleepRecorder
from tests.middleware.test_retry import retrying_client
from tests.scripted_server import Reply, ScriptedServer

pytest_plugins = ["crisp_api.testing.pytest_plugin"]


def test_a_trickling_answer_cannot_hold_a_call_past_its_deadline(fake_crisp: Any) -> None:
    # One byte every 0.4 s: each read arrives well within the 2 s timeout, forever.
    fake_crisp.set_faults(slow_body_rate=1.0, slow_chunk_bytes=1, slow_chunk_delay_ms=400)
    with fake_crisp.client(timeout=2, cache_ttl=0) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="deadline exceeded"):
            client.website.get_website(fake_crisp.website_id, deadline=1.5)
        assert time.monotonic() - started < 3.0
        fake_crisp.set_faults()
        # The connection whose socket timeout was cut is not reused with that timeout.
        assert client.website.get_website(fake_crisp.website_id)["website_id"]


def test_the_default_deadline_follows_timeout_and_retries(fake_crisp: Any) -> None:
    fake_crisp.set_faults(slow_body_rate=1.0, slow_chunk_bytes=1, slow_chunk_delay_ms=200)
    # (max_retries + 1) * timeout + the backoff's worst case: 2 * 0.5 + 0.25 = 1.25 s.
    with fake_crisp.client(timeout=0.5, max_retries=1, cache_ttl=0) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.website.get_website(fake_crisp.website_id)
        assert time.monotonic() - started < 2.5


def test_a_deadline_must_be_positive_seconds() -> None:
    with pytest.raises(ValueError, match="deadline"):
        Crisp(deadline=0)
    with Crisp() as client, pytest.raises(ValueError, match="deadline"):
        client.website.get_website("w1", deadline=-1)


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitedError), (503, ServerError)])
def test_a_retry_after_beyond_the_limit_fails_at_once_for_429_and_5xx_alike(
    server: ScriptedServer, status: int, error: type[Exception]
) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(status, headers={"Retry-After": "86400"}))
    client = retrying_client(server, sleeps)
    with pytest.raises(error) as raised:
        client.website.get_website("w1")
    assert raised.value.retry_after == 86400  # type: ignore[attr-defined]
    assert sleeps.calls == []  # no retry slept, and the bucket's pause is not ours to wait
    assert server.count() == 1


def test_a_retry_after_past_the_deadline_is_not_waited_for(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(503, headers={"Retry-After": "30"}))
    client = retrying_client(server, sleeps)
    with pytest.raises(ServerError) as raised:
        client.website.get_website("w1", deadline=5)
    assert raised.value.retry_after == 30
    assert sleeps.calls == []


@pytest.mark.parametrize("value", ["-5", "-0.5", "nan", "soon"])
def test_a_malformed_or_negative_retry_after_falls_back_to_backoff(
    server: ScriptedServer, value: str
) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(503, headers={"Retry-After": value}))
    client = retrying_client(server, sleeps)
    client.website.get_website("w1")
    assert len(sleeps.calls) == 1
    assert 0.0 <= sleeps.calls[0] <= 0.25  # the first backoff's full-jitter ceiling


def test_headers_are_case_insensitive_whatever_mapping_was_given() -> None:
    for name in ("Retry-After", "retry-after", "RETRY-AFTER"):
        response = Response(429, {name: "30"}, b"")
        assert response.retry_after == 30.0
        assert response.headers["retry-after"] == "30"


def test_one_429_then_a_200_parses_retry_after_once(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[object] = []
    real = message_module.retry_after_seconds

    def counting(headers: Any) -> float | None:
        parsed.append(headers)
        return real(headers)

    monkeypatch.setattr(message_module, "retry_after_seconds", counting)
    sleeps = SleepRecorder()
    server.push(Reply(429, headers={"Retry-After": "2"}))
    client = retrying_client(server, sleeps)
    client.website.get_website("w1")
    assert sleeps.calls.count(2.0) >= 1
    assert len(parsed) == 1


def test_a_huge_retry_after_does_not_hold_other_calls_past_their_deadline(
    server: ScriptedServer,
) -> None:
    # A fixed rate: its bucket pauses every caller for each Retry-After (an adaptive one
    # does so only once the share of refusals says the limit is shared).
    with Crisp(timeout=5, cache_ttl=0, rate_limit=100) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        server.push(Reply(429, headers={"Retry-After": "86400"}))
        with pytest.raises(RateLimitedError):
            client.website.get_website("w1")
        # The bucket now pauses every caller for the longest pause (60 s); a caller with
        # 1 s to spare fails at once, with the wait, instead of sleeping a minute.
        results: list[BaseException] = []

        def other() -> None:
            try:
                client.website.get_website("w2", deadline=1.0)
            except RateLimitedError as exc:
                results.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert time.monotonic() - started < 2.0
        assert len(results) == 1
        assert isinstance(results[0], RateLimitedError)
        assert results[0].retry_after is not None
        assert 55 < results[0].retry_after <= 60
        assert server.count() == 1  # nothing else was sent
