"""Retry rules over real sockets: what is retried, how long it waits, and the budget."""

from __future__ import annotations

import tracemalloc

import pytest

from crisp_api import Crisp, NetworkError, RateLimitedError, ServerError
from middleware import (
    InMemoryBucket,
    RateLimit,
    Retry,
    RetryBudget,
    RetryPolicy,
)
from tests.conftest import IDENTIFIER, KEY, SleepRecorder
from tests.scripted_server import Drop, Reply, ScriptedServer

RATE_LIMIT_STATUSES = frozenset({420, 429})


def retrying_client(
    server: ScriptedServer,
    sleeps: SleepRecorder,
    *,
    max_retries: int = 3,
    budget: RetryBudget | None = None,
) -> Crisp:
    """A client whose retry and rate-limit layers record their waits instead of sleeping."""
    client = Crisp(timeout=5)
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    policy = RetryPolicy(max_retries=max_retries, rate_limit_statuses=RATE_LIMIT_STATUSES)
    client.set_middleware(
        [
            Retry(policy, budget or RetryBudget(ratio=10, min_per_second=100), sleep=sleeps),
            RateLimit(InMemoryBucket(None), pause_statuses=RATE_LIMIT_STATUSES, sleep=sleeps),
            client.auth,
        ]
    )
    return client


def test_503_on_get_is_retried_until_success(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(503), Reply(503))
    client = retrying_client(server, sleeps)

    assert client.website.get_website("w1") == {"path": "/v1/website/w1"}
    assert server.count("GET") == 3
    assert len(sleeps.calls) == 2


def test_503_on_post_is_not_retried(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(503))
    client = retrying_client(server, sleeps)

    with pytest.raises(ServerError) as raised:
        client.website.send_message_in_conversation("w1", "s1", {"type": "text"})
    assert raised.value.status == 503
    assert server.count("POST") == 1
    assert sleeps.calls == []


def test_dropped_connection_retried_for_get_never_for_post(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    client = retrying_client(server, sleeps)

    server.push(Drop())
    assert client.website.get_conversation("w1", "s1") == {"path": "/v1/website/w1/conversation/s1"}
    assert server.count("GET") == 2

    server.push(Drop())
    with pytest.raises(NetworkError):
        client.website.send_message_in_conversation("w1", "s1", {"type": "text"})
    assert server.count("POST") == 1


@pytest.mark.parametrize("status", [429, 420])
def test_rate_limit_answers_are_retried_for_every_method(
    server: ScriptedServer, status: int
) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(status, headers={"Retry-After": "2"}))
    client = retrying_client(server, sleeps)

    client.website.send_message_in_conversation("w1", "s1", {"type": "text"})
    assert server.count("POST") == 2
    # The rate limiter pauses every caller and the retry waits: both for the asked 2 s.
    assert 2.0 in sleeps.calls


def test_retry_after_http_date_is_honoured(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    client = retrying_client(server, sleeps)

    client.website.get_website("w1")
    # A date in the past means "now": the wait is zero, not the jittered backoff.
    assert sleeps.calls == [0.0]


def test_retry_after_beyond_the_limit_fails_with_the_wait(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.push(Reply(429, headers={"Retry-After": "3600"}))
    client = retrying_client(server, sleeps)

    with pytest.raises(RateLimitedError) as raised:
        client.website.get_website("w1")
    assert raised.value.status == 429
    assert raised.value.retry_after == 3600
    assert server.count() == 1


def test_backoff_is_capped_full_jitter() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    for retry_number in range(1, 12):
        ceiling = min(4.0, 0.5 * 2 ** (retry_number - 1))
        waits = [policy.backoff(retry_number) for _ in range(200)]
        assert all(0.0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling / 2  # jitter spans the window, not a fixed value


def test_exhausted_retries_raise_the_last_status(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.default = Reply(502, body=b"<html>bad gateway</html>", content_type="text/html")
    client = retrying_client(server, sleeps, max_retries=2)

    with pytest.raises(ServerError) as raised:
        client.website.get_website("w1")
    assert raised.value.status == 502
    assert raised.value.snippet == "<html>bad gateway</html>"
    assert server.count() == 3


def test_budget_bounds_attempts_against_a_dead_server(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    server.default = Reply(503)
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, window=10.0)
    client = retrying_client(server, sleeps, max_retries=5, budget=budget)

    calls = 100
    for _ in range(calls):
        with pytest.raises(ServerError):
            client.website.get_website("w1")
    # Without the budget this would be 600 attempts; with it, 20% plus the 10-second floor.
    assert server.count() <= calls * 1.2 + 1.0 * 10.0
    # And once spent, calls fail fast: the last calls made a single attempt each.
    tail = server.count()
    for _ in range(10):
        with pytest.raises(ServerError):
            client.website.get_website("w1")
    assert server.count() - tail <= 10 + 2


def test_connection_never_opened_is_retried_even_for_post() -> None:
    sleeps = SleepRecorder()
    attempts: list[str] = []

    class CountAttempts:
        name = "count"

        def __call__(self, request, call_next):  # type: ignore[no-untyped-def]
            attempts.append(request.method)
            return call_next(request)

    client = Crisp(timeout=2)
    client.set_rest_host("http://127.0.0.1:9")  # discard port: nothing listens
    client.authenticate(IDENTIFIER, KEY)
    client.set_middleware(
        [
            Retry(RetryPolicy(max_retries=2), RetryBudget(min_per_second=100), sleep=sleeps),
            CountAttempts(),
            client.auth,
        ]
    )
    with pytest.raises(NetworkError) as raised:
        client.website.send_message_in_conversation("w1", "s1", {"type": "text"})
    assert raised.value.status is None
    assert attempts == ["POST", "POST", "POST"]


def test_paced_rate_limit_retries_do_not_spend_the_budget(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    empty = RetryBudget(ratio=0.0, min_per_second=0.0)
    client = retrying_client(server, sleeps, budget=empty)

    server.push(Reply(429, headers={"Retry-After": "1"}), Reply(420, headers={"Retry-After": "2"}))
    assert client.website.get_website("w1") == {"path": "/v1/website/w1"}
    assert server.count() == 3

    # Without a pace of the server's (no Retry-After, or under a second), the budget rules.
    server.push(Reply(429), Reply(429, headers={"Retry-After": "0"}), Reply(503))
    for _ in range(3):
        with pytest.raises((RateLimitedError, ServerError)):
            client.website.get_website("w1")
    assert server.count() == 6


def test_a_budget_that_never_retries_keeps_one_window_of_counts() -> None:
    """A day of first attempts, one a second, and no retry: the budget's memory stays that of
    one window (it grew by a count per second when only a retry forgot old deposits)."""
    now = [0.0]
    budget = RetryBudget(window=10.0, timer=lambda: now[0])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for second in range(86_400):
            now[0] = float(second)
            budget.deposit()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10_000
    assert budget.try_withdraw()
