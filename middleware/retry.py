"""Retrying with exponential backoff and full jitter (tenacity), honouring ``Retry-After``.

What is retried is decided in one place, `RetryPolicy.should_retry`:

* rate-limit answers (429, and any extra codes such as Crisp's 420), for every method: the
  server refused the request without acting on it;
* a connection that was never opened, for every method: nothing was sent;
* read timeouts, dropped connections and 500/502/503/504, only for idempotent methods: the
  server may have acted, and only a request that does no harm twice may be sent again.

Retries are paid for from a `RetryBudget`, except those of rate-limit answers that set
their own pace (see `RetryPolicy.needs_budget`). A first attempt that needs no retry never
touches tenacity, so the common case costs one call and one status check.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, retry_base, stop_after_attempt

from middleware.budget import RetryBudget
from middleware.contract import Handler
from middleware.errors import TransportError
from middleware.message import Attempt, Request, Response
from middleware.retry_after import retry_after_seconds

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


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

    def should_retry(self, request: Request, outcome: Response | BaseException) -> bool:
        """Whether this outcome of ``request`` may be answered by sending it again."""
        if isinstance(outcome, Response):
            status = outcome.status
            if status in self.rate_limit_statuses:
                wait = retry_after_seconds(outcome.headers)
                return wait is None or wait <= self.max_retry_after
            return (
                status in self.server_error_statuses and request.method in self.idempotent_methods
            )
        if isinstance(outcome, TransportError):
            return outcome.retry_can_help and (
                not outcome.may_have_reached_server or request.method in self.idempotent_methods
            )
        return False

    def needs_budget(self, outcome: Response | BaseException) -> bool:
        """Whether retrying ``outcome`` must be paid for from the retry budget.

        A rate-limit answer that asks for a wait of a second or more sets the pace itself:
        the retry goes out only after that wait (and the rate limiter holds every caller
        back as long), so it cannot amplify load the way retrying failures does. Such
        retries are not counted, so a throttled batch completes instead of failing once
        the budget is spent; everything else is.
        """
        if isinstance(outcome, Response) and outcome.status in self.rate_limit_statuses:
            asked = retry_after_seconds(outcome.headers)
            return asked is None or asked < 1.0
        return True

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff before retry ``retry_number`` (1-based)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (retry_number - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography

    def wait_before(self, retry_number: int, outcome: Response | BaseException) -> float:
        """The pause before retry ``retry_number``: the server's Retry-After if it gave one."""
        if isinstance(outcome, Response):
            asked = retry_after_seconds(outcome.headers)
            if asked is not None:
                return min(asked, self.max_retry_after)
        return self.backoff(retry_number)


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
        self._retrying = Retrying(
            sleep=sleep,
            stop=stop_after_attempt(self.policy.max_retries + 1),
            wait=self._wait,
            reraise=True,
            retry_error_callback=_last_outcome,
        )

    def __call__(self, request: Request, call_next: Handler) -> Response:
        self.budget.deposit()
        started = time.perf_counter()
        try:
            response = call_next(request)
        except TransportError as exc:
            if not self.policy.should_retry(request, exc):
                raise
            return self._retry(request, call_next, exc, started)
        if response.status in self.policy.retryable_statuses and self.policy.should_retry(
            request, response
        ):
            return self._retry(request, call_next, response, started)
        return response

    def _retry(
        self,
        request: Request,
        call_next: Handler,
        first: Response | TransportError,
        started: float,
    ) -> Response:
        """The slow path: hand the loop to tenacity, replaying the known first outcome."""
        attempts = [_record(1, first, started, request)]
        request.attempts = attempts
        pending: list[Response | TransportError] = [first]

        def attempt() -> Response:
            if pending:
                outcome = pending.pop()
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
            request.rate_limit_wait = 0.0
            begun = time.perf_counter()
            try:
                response = call_next(request)
            except TransportError as exc:
                attempts.append(_record(len(attempts) + 1, exc, begun, request))
                raise
            attempts.append(_record(len(attempts) + 1, response, begun, request))
            return response

        retrying = self._retrying.copy(retry=_Retryable(self, request))
        result: Response = retrying(attempt)
        return result

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is None:
            return 0.0
        value: Response | BaseException | None = (
            outcome.exception() if outcome.failed else outcome.result()
        )
        if value is None:
            return 0.0
        return self.policy.wait_before(state.attempt_number, value)

    def __repr__(self) -> str:
        return f"<Retry {self.policy!r} {self.budget!r}>"


class _Retryable(retry_base):
    """tenacity's retry predicate: the policy says yes and the budget still has room."""

    def __init__(self, owner: Retry, request: Request) -> None:
        self._owner = owner
        self._request = request

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None:
            return False
        value: Response | BaseException | None = (
            outcome.exception() if outcome.failed else outcome.result()
        )
        policy = self._owner.policy
        if value is None or not policy.should_retry(self._request, value):
            return False
        return not policy.needs_budget(value) or self._owner.budget.try_withdraw()


def _last_outcome(state: RetryCallState) -> Response:
    """When attempts run out, give back the last answer (or raise the last error) as is."""
    assert state.outcome is not None
    result: Response = state.outcome.result()
    return result


def _record(
    number: int, outcome: Response | BaseException, begun: float, request: Request
) -> Attempt:
    status = outcome.status if isinstance(outcome, Response) else None
    error = None if isinstance(outcome, Response) else type(outcome).__name__
    return Attempt(
        number=number,
        status=status,
        error=error,
        duration_ms=(time.perf_counter() - begun) * 1000.0,
        rate_limit_wait_ms=request.rate_limit_wait * 1000.0,
    )
