"""`RetryPolicy.decide`, the one judgement of an attempt, as a table: no socket, no clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from middleware import (
    ConnectError,
    DeadlineExceededError,
    Outcome,
    ReadTimeoutError,
    RetryPolicy,
    TLSError,
    TransportError,
)
from tests.middleware.unit.canned import answer, request

pytestmark = pytest.mark.middleware

THROTTLED = frozenset({420, 429})
POLICY = RetryPolicy(max_retries=3, max_retry_after=60.0, rate_limit_statuses=THROTTLED)
NOW = 1000.0


def outcome(
    status: int | None = None,
    *,
    error: TransportError | None = None,
    number: int = 1,
    retry_after: float | None = None,
) -> Outcome:
    """An `Outcome` as the retry layer builds it, judged against `THROTTLED`."""
    return Outcome(
        number=number,
        response=None if status is None else answer(status),
        error=error,
        status=status,
        retry_after=retry_after,
        may_have_reached_server=True if error is None else error.may_have_reached_server,
        duration=0.01,
        rate_limit_wait=0.0,
        throttled=status in THROTTLED and error is None,
    )


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    outcome: Outcome
    retry: bool
    reason: str = ""
    needs_budget: bool = True
    wait: float = 0.5
    deadline: float | None = None
    policy: RetryPolicy = POLICY


def _error(kind: type[TransportError]) -> TransportError:
    return kind("scripted", "GET", "/thing")


CASES = [
    Case("a 503 to a GET is retried", "GET", outcome(503), True),
    Case("a 503 to a POST is not", "POST", outcome(503), False, "not_retryable"),
    Case("a 429 to a POST is retried: refused, not acted on", "POST", outcome(429), True),
    Case("Crisp's 420 too, when in the throttled set", "POST", outcome(420), True),
    Case("a 420 not judged throttled is a plain 4xx", "GET",
         Outcome(1, answer(420), None, 420, None, True, 0.0, 0.0, throttled=False),
         False, "not_retryable"),
    Case("a Retry-After of a second or more paces itself: no budget", "GET",
         outcome(429, retry_after=2.0), True, needs_budget=False, wait=2.0),
    Case("a shorter Retry-After does not", "GET", outcome(429, retry_after=0.5), True,
         wait=0.5),
    Case("a paced 503 still pays: only throttling is paced", "GET",
         outcome(503, retry_after=2.0), True, wait=2.0),
    Case("an adaptive limiter paces every throttled retry", "GET", outcome(429), True,
         needs_budget=False, policy=RetryPolicy(rate_limit_statuses=THROTTLED,
                                                paced_by_limiter=True)),
    Case("the last retry allowed", "GET", outcome(503, number=3), True),
    Case("one more is too many", "GET", outcome(503, number=4), False, "max_retries"),
    Case("no retry at all", "GET", outcome(503), False, "max_retries",
         policy=RetryPolicy(max_retries=0)),
    Case("a Retry-After beyond the limit is not waited for", "GET",
         outcome(429, retry_after=3600.0), False, "retry_after_too_long", wait=3600.0),
    Case("a wait ending past the deadline is not waited", "GET", outcome(503), False,
         "deadline", wait=2.0, deadline=NOW + 1.0),
    Case("a wait ending before it is", "GET", outcome(503), True, wait=2.0,
         deadline=NOW + 3.0),
    Case("a connection never opened: any method", "POST", outcome(error=_error(ConnectError)),
         True),
    Case("a read timeout on a GET", "GET", outcome(error=_error(ReadTimeoutError)), True),
    Case("a read timeout on a POST: may have acted", "POST",
         outcome(error=_error(ReadTimeoutError)), False, "not_retryable"),
    Case("TLS fails the same way again", "GET", outcome(error=_error(TLSError)), False,
         "not_retryable"),
    Case("no time left", "GET",
         outcome(error=DeadlineExceededError("GET", "/thing", sent=False)), False,
         "not_retryable"),
    Case("a success is not retried", "GET", outcome(200), False, "not_retryable"),
    Case("nor a 404", "GET", outcome(404), False, "not_retryable"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decide(case: Case) -> None:
    decision = case.policy.decide(
        request(case.method, deadline=case.deadline), case.outcome, NOW, case.wait
    )
    assert (decision.retry, decision.reason) == (case.retry, case.reason)
    if case.retry:
        assert decision.wait == case.wait
        assert decision.needs_budget is case.needs_budget


def test_the_backoff_is_tenacitys_full_jitter_under_the_capped_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    for retry_number, ceiling in ((1, 0.5), (2, 1.0), (4, 4.0), (30, 4.0)):
        waits = [policy.backoff(retry_number) for _ in range(200)]
        assert all(0.0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling / 2
    assert policy.worst_backoff() == 0.5 + 1.0 + 2.0 + 4.0
