"""The retry layer run by tenacity, against canned answers: attempts, waits, budget, listeners."""

from __future__ import annotations

import threading

import pytest

from middleware import (
    ConnectError,
    InMemoryBucket,
    Outcome,
    RateLimit,
    RateLimitWaitError,
    ReadTimeoutError,
    Request,
    Retry,
    RetryBudget,
    RetryPolicy,
    compose,
    listen,
)
from tests.conftest import SleepRecorder
from tests.middleware.unit.canned import Canned, answer, request

pytestmark = pytest.mark.middleware

THROTTLED = frozenset({420, 429})


def layer(max_retries: int = 3, budget: RetryBudget | None = None,
          sleep: SleepRecorder | None = None) -> Retry:
    return Retry(
        RetryPolicy(max_retries=max_retries, rate_limit_statuses=THROTTLED),
        budget or RetryBudget(min_per_second=100),
        sleep=sleep or SleepRecorder(),
    )


def heard(call: Request) -> list[Outcome]:
    """Subscribe to ``call``'s attempts; the list fills as they end."""
    outcomes: list[Outcome] = []
    listen(call, lambda _request, outcome: outcomes.append(outcome))
    return outcomes


class CountingBudget(RetryBudget):
    """A budget that counts how often a retry was asked of it."""

    def __init__(self, retries: int) -> None:
        super().__init__(ratio=0.0, min_per_second=retries / 10.0, window=10.0)
        self.asked = 0

    def try_withdraw(self) -> bool:
        self.asked += 1
        return super().try_withdraw()


def test_every_attempt_is_reported_once_with_what_followed() -> None:
    sleeps = SleepRecorder()
    canned = Canned(answer(503), answer(429, "2"))
    call = request()
    outcomes = heard(call)

    response = compose([layer(sleep=sleeps)], canned)(call)

    assert response.status == 200
    assert [(o.number, o.status, o.throttled) for o in outcomes] == [
        (1, 503, False), (2, 429, True), (3, 200, False)]
    decisions = [o.decision for o in outcomes]
    assert [d.retry if d else None for d in decisions] == [True, True, None]  # a success:
    assert [d.wait for d in decisions if d] == sleeps.calls                   # nothing decided
    assert sleeps.calls[1] == 2.0


def test_the_last_attempt_says_why_no_retry_followed() -> None:
    exhausted = request()
    outcomes = heard(exhausted)
    response = compose([layer(max_retries=2)], Canned(default=answer(502)))(exhausted)
    assert response.status == 502
    assert [o.decision.reason if o.decision else None for o in outcomes] == [
        "", "", "max_retries"]

    post = request("POST")
    outcomes = heard(post)
    assert compose([layer()], Canned(answer(503)))(post).status == 503
    assert [o.decision.reason if o.decision else None for o in outcomes] == ["not_retryable"]

    refused = request()
    outcomes = heard(refused)
    assert compose([layer()], Canned(answer(429, "3600")))(refused).status == 429
    assert [o.decision.reason if o.decision else None for o in outcomes] == [
        "retry_after_too_long"]


def test_a_failure_is_raised_once_no_retry_may_follow() -> None:
    canned = Canned(ReadTimeoutError("scripted", "POST", "/thing"))
    call = request("POST")
    outcomes = heard(call)
    with pytest.raises(ReadTimeoutError):
        compose([layer()], canned)(call)
    assert canned.methods == ["POST"]
    assert [(o.error_name, o.decision.reason if o.decision else None) for o in outcomes] == [
        ("ReadTimeoutError", "not_retryable")]


def test_a_connection_never_opened_is_retried_even_for_a_post() -> None:
    canned = Canned(ConnectError("refused", "POST", "/thing"))
    assert compose([layer()], canned)(request("POST")).status == 200
    assert canned.methods == ["POST", "POST"]


def test_a_refusal_before_sending_is_no_attempt_and_passes_through() -> None:
    """The limiter refused: nothing reached the network, nothing is retried or reported."""
    canned = Canned()
    limiter = RateLimit(InMemoryBucket(1.0, burst=1), max_wait=0.0)
    handler = compose([layer(), limiter], canned)
    handler(request())
    call = request()
    outcomes = heard(call)
    with pytest.raises(RateLimitWaitError):
        handler(call)
    assert outcomes == []
    assert canned.methods == ["GET"]


def test_the_budget_is_asked_once_per_retry_and_only_then() -> None:
    budget = CountingBudget(retries=2)
    canned = Canned(default=answer(503))
    call = request()
    outcomes = heard(call)
    compose([layer(max_retries=5, budget=budget)], canned)(call)
    # Two retries paid, the third refused: asked three times, for three attempts in all.
    assert budget.asked == 3
    assert len(canned.methods) == 3
    assert outcomes[-1].decision is not None
    assert outcomes[-1].decision.reason == "retry_budget_spent"

    # Not asked for a retry the policy refuses, nor for one the server paces.
    budget.asked = 0
    compose([layer(budget=budget)], Canned(answer(503)))(request("POST"))
    compose([layer(budget=budget)], Canned(answer(429, "2")))(request())
    compose([layer(max_retries=0, budget=budget)], Canned(answer(503)))(request())
    assert budget.asked == 0


def test_threads_sharing_the_layer_keep_their_own_progress() -> None:
    """One tenacity `Retrying` serves the layer; two calls retrying at the same time on two
    threads (they meet in the wait) each count their own attempts and get their own answer."""
    meet = threading.Barrier(2, timeout=10)
    retry = Retry(RetryPolicy(max_retries=3), RetryBudget(min_per_second=100),
                  sleep=lambda _seconds: meet.wait())
    results: dict[str, list[tuple[int, int | None]]] = {}

    def run(name: str, statuses: list[int]) -> None:
        call = request()
        outcomes = heard(call)
        compose([retry], Canned(*(answer(status) for status in statuses)))(call)
        results[name] = [(o.number, o.status) for o in outcomes]

    threads = [threading.Thread(target=run, args=("a", [503, 503])),
               threading.Thread(target=run, args=("b", [502, 504]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {"a": [(1, 503), (2, 503), (3, 200)], "b": [(1, 502), (2, 504), (3, 200)]}
