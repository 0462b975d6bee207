"""Which answers are "throttled" is judged once per attempt, from the one set the stack passes:
the retry layer's `Outcome`, the rate limiter's pause, the logs' level, all from that set."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from crisp_api import Crisp
from middleware import (
    InMemoryBucket,
    Outcome,
    RateLimit,
    Retry,
    RetryBudget,
    RetryPolicy,
    StructuredLogging,
    compose,
    listen,
)
from tests.conftest import SleepRecorder
from tests.middleware.unit.canned import Canned, answer, request

pytestmark = pytest.mark.middleware


def test_the_default_stack_passes_one_set_to_retry_and_rate_limit() -> None:
    with Crisp() as client:
        retry = next(layer for layer in client.middleware if isinstance(layer, Retry))
        limiter = next(layer for layer in client.middleware if isinstance(layer, RateLimit))
    assert retry.policy.rate_limit_statuses is limiter.pause_statuses
    assert limiter.pause_statuses == frozenset({420, 429})


@pytest.mark.parametrize(("throttled", "judged"), [(frozenset({420, 429}), True),
                                                   (frozenset({429}), False)])
def test_an_outcome_is_throttled_by_the_set_given(throttled: frozenset[int], judged: bool
                                                  ) -> None:
    outcomes: list[Outcome] = []
    call = request("POST")
    listen(call, lambda _request, outcome: outcomes.append(outcome))
    retry = Retry(RetryPolicy(rate_limit_statuses=throttled), RetryBudget(min_per_second=100),
                  sleep=SleepRecorder())
    compose([retry], Canned(answer(420, "1")))(call)
    assert outcomes[0].throttled is judged
    # A throttled answer is retried whatever the method; a plain 4xx is not.
    assert len(outcomes) == (2 if judged else 1)


@pytest.mark.parametrize(("pause_statuses", "paused"), [(frozenset({420, 429}), True),
                                                        (frozenset({429}), False)])
def test_the_rate_limiter_pauses_on_the_set_given(pause_statuses: frozenset[int], paused: bool
                                                  ) -> None:
    bucket = InMemoryBucket(None)
    limiter = RateLimit(bucket, pause_statuses=pause_statuses, sleep=SleepRecorder())
    compose([limiter], Canned(answer(420, "5")))(request())
    assert (bucket.pauses, bucket.pause_left() > 4.0) == ((1, True) if paused else (0, False))


def _levels(events: list[dict[str, Any]]) -> list[tuple[int, int | None, str]]:
    return [(e["attempt"], e["status"], e["log_level"]) for e in events]


def _logged_stack(throttled: frozenset[int]) -> Any:
    return [
        StructuredLogging(structlog.get_logger()),
        Retry(RetryPolicy(max_retries=2, rate_limit_statuses=throttled),
              RetryBudget(min_per_second=100), sleep=SleepRecorder()),
    ]


def test_retries_that_end_in_success_log_no_warning() -> None:
    with structlog.testing.capture_logs() as events:
        compose(_logged_stack(frozenset({420, 429})),
                Canned(answer(420, "1"), answer(503), answer(200)))(request())
    assert _levels(events) == [(1, 420, "info"), (2, 503, "info"), (3, 200, "debug")]
    assert [e["retry_in_ms"] is not None for e in events] == [True, True, False]


def test_a_call_that_fails_after_retries_warns_once_saying_why() -> None:
    with structlog.testing.capture_logs() as events:
        compose(_logged_stack(frozenset({420, 429})), Canned(default=answer(420)))(request())
    assert _levels(events) == [(1, 420, "info"), (2, 420, "info"), (3, 420, "warning")]
    assert events[-1]["gave_up"] == "max_retries"


def test_the_log_level_of_a_last_answer_follows_the_throttled_judgement() -> None:
    """A 420 ending a call is a warning where the stack says 420 is throttling, and a plain
    client error (info) where it does not."""
    with structlog.testing.capture_logs() as events:
        compose(_logged_stack(frozenset({429})), Canned(answer(420)))(request())
        compose(_logged_stack(frozenset({420, 429})),
                Canned(answer(420, "3600")))(request())
    assert [(e["status"], e["log_level"], e["gave_up"]) for e in events] == [
        (420, "info", None), (420, "warning", "retry_after_too_long")]
