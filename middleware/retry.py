"""Retrying with capped, fully jittered exponential backoff, honouring ``Retry-After``.

Each attempt that is not a plain answer (a retryable status or a transport failure) becomes
one `Outcome`: status, ``Retry-After`` parsed once, error class, whether the request may have
reached the server, how long it took and how long it waited for its rate-limit turn. One
function, `RetryPolicy.decide`, reads it once and gives a `Decision` (retry or not, the wait
before it, whether the retry budget pays, the reason), like botocore's ``RetryContext``. The
rules:

* rate-limit answers (429, and any extra codes such as Crisp's 420), for every method: the
  server refused the request without acting on it;
* a connection that was never opened, for every method: nothing was sent;
* read timeouts, dropped connections and 500/502/503/504, only for idempotent methods: the
  server may have acted, and only a request that does no harm twice may be sent again;
* the wait is the answer's ``Retry-After`` if it has one, else full jitter over an exponential
  ceiling; an answer asking for longer than ``max_retry_after``, or a wait that would end past
  the request's deadline, is not waited for: the answer is returned as it is, the same way
  for a 429 and a 503, and the caller fails at once with the wait the server asked for;
* retries are paid for from a `RetryBudget`, except those of rate-limit answers that are
  paced anyway: by the server (a ``Retry-After`` of a second or more) or by a limiter that
  learns its rate from them (``paced_by_limiter``).

Why a short loop rather than tenacity (which the project no longer depends on): every
decision needs the attempt's outcome *and* the request (its method, its deadline), the budget
is a shared side effect that must be charged exactly once per retry, and each ending attempt
must be reported to the log as it ends. Expressed as tenacity strategies, those became
predicates that re-read and re-judged the same outcome (``Retry-After`` parsed five times for
one 429) and a replay of the first attempt to enter tenacity's loop; its full jitter is one
line (`RetryPolicy.backoff`). The loop below is the whole algorithm in one screen, judges each
outcome once, and costs nothing on the common path (an answer that needs no retry).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from middleware.budget import RetryBudget
from middleware.contract import Handler
from middleware.errors import TransportError
from middleware.message import (
    NOTE_ATTEMPT,
    NOTE_ATTEMPT_ENDED,
    NOTE_RATE_LIMIT_WAIT,
    Request,
    Response,
)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, built once and read by every decision and by the logs."""

    number: int
    """1-based attempt number."""
    response: Response | None
    error: TransportError | None
    status: int | None
    """The answer's status, or the status line seen before a transport failure, if any."""
    retry_after: float | None
    """The answer's ``Retry-After`` in seconds; None if absent or malformed."""
    may_have_reached_server: bool
    duration: float
    """Seconds from the attempt's start to its end."""
    rate_limit_wait: float
    """Seconds of that spent waiting for a rate-limit turn."""

    @property
    def error_name(self) -> str | None:
        """The failure's class name, for logs; None for an answer."""
        return None if self.error is None else type(self.error).__name__


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after an `Outcome`."""

    retry: bool
    wait: float = 0.0
    """Seconds to sleep before the retry."""
    needs_budget: bool = True
    reason: str = ""
    """Why not, when ``retry`` is false (``"not_retryable"``, ``"max_retries"``,
    ``"retry_after_too_long"``, ``"deadline"``, ``"retry_budget_spent"``)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry rules as a value: what to retry, how often, how long to wait."""

    max_retries: int = 4
    backoff_base: float = 0.25
    backoff_cap: float = 20.0
    max_retry_after: float = 60.0
    rate_limit_statuses: frozenset[int] = frozenset({429})
    server_error_statuses: frozenset[int] = frozenset({500, 502, 503, 504})
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    paced_retry_after: float = 1.0
    """A rate-limit answer asking for at least this many seconds sets its own pace: its retry
    is not charged to the budget (it cannot amplify load), so a throttled batch completes."""
    paced_by_limiter: bool = False
    """Every rate-limit answer's retry is paced by a limiter that learns from those answers
    (an adaptive bucket): retries then draw on the learnt rate like any request and cannot
    amplify load either, so none of them is charged to the budget."""
    retryable_statuses: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {self.max_retries}")
        if self.backoff_base <= 0 or self.backoff_cap <= 0:
            raise ValueError("backoff_base and backoff_cap must be positive")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must not be negative")
        object.__setattr__(
            self, "retryable_statuses", self.rate_limit_statuses | self.server_error_statuses
        )

    def may_retry(self, request: Request, outcome: Outcome) -> bool:
        """Whether this kind of outcome may be answered by sending ``request`` again."""
        if outcome.error is not None:
            return outcome.error.retry_can_help and (
                not outcome.may_have_reached_server or request.method in self.idempotent_methods
            )
        if outcome.status in self.rate_limit_statuses:
            return True
        return (
            outcome.status in self.server_error_statuses
            and request.method in self.idempotent_methods
        )

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff before retry ``retry_number`` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (retry_number - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography

    def worst_backoff(self) -> float:
        """The longest the backoff alone can make a call wait, over all its retries."""
        return float(
            sum(min(self.backoff_cap, self.backoff_base * 2**n) for n in range(self.max_retries))
        )

    def decide(self, request: Request, outcome: Outcome, now: float) -> Decision:
        """The one judgement of ``outcome`` (``now`` is `time.monotonic`)."""
        if not self.may_retry(request, outcome):
            return Decision(False, reason="not_retryable")
        if outcome.number > self.max_retries:
            return Decision(False, reason="max_retries")
        asked = outcome.retry_after
        if asked is not None and asked > self.max_retry_after:
            return Decision(False, reason="retry_after_too_long")
        wait = self.backoff(outcome.number) if asked is None else asked
        if request.deadline is not None and now + wait >= request.deadline:
            return Decision(False, reason="deadline")
        paced = outcome.status in self.rate_limit_statuses and (
            self.paced_by_limiter or (asked is not None and asked >= self.paced_retry_after)
        )
        return Decision(True, wait, needs_budget=not paced)


class Retry:
    """The retry middleware; see the module docstring for the rules."""

    name = "retry"

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.budget = budget or RetryBudget()
        self._sleep = sleep
        self._retryable = self.policy.retryable_statuses

    def __call__(self, request: Request, call_next: Handler) -> Response:
        self.budget.deposit()
        notes = request.notes
        number = 1
        while True:
            notes[NOTE_ATTEMPT] = number
            begun = time.perf_counter()
            error: TransportError | None = None
            try:
                response: Response | None = call_next(request)
            except TransportError as exc:
                if not exc.retry_can_help:
                    raise
                response, error = None, exc
            if response is not None and response.status not in self._retryable:
                if number > 1:
                    self._report(request, _outcome(request, number, response, None, begun), None)
                return response
            outcome = _outcome(request, number, response, error, begun)
            decision = self.policy.decide(request, outcome, time.monotonic())
            if decision.retry and decision.needs_budget and not self.budget.try_withdraw():
                decision = Decision(False, reason="retry_budget_spent")
            self._report(request, outcome, decision)
            if not decision.retry:
                if error is not None:
                    raise error
                assert response is not None
                return response
            self._sleep(decision.wait)
            notes[NOTE_RATE_LIMIT_WAIT] = 0.0
            number += 1

    @staticmethod
    def _report(request: Request, outcome: Outcome, decision: Decision | None) -> None:
        """Hand ``outcome`` to the outer layer listening for ending attempts, if any."""
        listener = request.notes.get(NOTE_ATTEMPT_ENDED)
        if listener is not None:
            listener(request, outcome, decision)

    def __repr__(self) -> str:
        return f"<Retry max_retries={self.policy.max_retries} {self.budget!r}>"


def _outcome(
    request: Request,
    number: int,
    response: Response | None,
    error: TransportError | None,
    begun: float,
) -> Outcome:
    """Build the `Outcome` of the attempt that started at ``begun``."""
    return Outcome(
        number=number,
        response=response,
        error=error,
        status=response.status if response is not None else error.status if error else None,
        retry_after=(
            response.retry_after
            if response is not None and response.status >= 400
            else None
        ),
        may_have_reached_server=error.may_have_reached_server if error is not None else True,
        duration=time.perf_counter() - begun,
        rate_limit_wait=request.notes.get(NOTE_RATE_LIMIT_WAIT, 0.0),
    )
