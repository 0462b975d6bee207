"""Retrying with capped, fully jittered exponential backoff, honouring ``Retry-After``.

The rules (`RetryPolicy`, a value):

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

tenacity runs the loop. Each attempt builds its `Outcome` once
(`middleware.attempts`) and returns it as the attempt's result; tenacity keeps it in
``retry_state.outcome``, where every strategy reads it. The pieces map like this:

==========================  ==========================================================
tenacity                    here
==========================  ==========================================================
the attempt function        `Retry._attempt`: one call down the pipeline -> `Outcome`.
                            A call's first attempt is made before the loop: an answer
                            no retry is ever for (a status outside the retryable ones)
                            is returned at once, without tenacity's bookkeeping (about
                            12 us of CPU, 4% of a request); any other outcome is
                            tenacity's first attempt (`_FirstThenNew`), judged by the
                            strategies below like every later one
``retry``                   `_AskPolicy`: may this kind of outcome be retried
                            (`RetryPolicy.may_retry`)?
``wait``                    `_RetryAfterOrBackoff`: the ``Retry-After``, else
                            ``wait_random_exponential`` (`RetryPolicy.jitter`)
``stop``                    `_Stop`: `RetryPolicy.decide` (attempts, a ``Retry-After``
                            too long, the deadline), then the budget, charged there and
                            only there, once per retry that will happen
``before_sleep``            tells the listeners of the attempt a retry follows
``retry_error_callback``    tells them of the attempt the stop ended, and returns it
the layer, after the loop   tells them of a final attempt no retry was for (a success,
                            a failure of a kind never retried), then answers or raises
==========================  ==========================================================

So each ending attempt is reported once, as it ends, and `RetryPolicy.decide` is the one
judgement of whether a retry follows; it is pure (the wait is an input), so a table of
outcomes tests it. One `tenacity.Retrying` serves the layer for its whole life: tenacity keeps
a call's progress in a ``threading.local``, so the threads sharing the layer do not share it
(an attempt never re-enters the same layer on its own thread: it goes inward only).
An exception that is no attempt's outcome (the rate limiter's refusal, say) is not retried
and passes through as raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from middleware.attempts import ATTEMPT_ERRORS, AttemptError, Decision, Outcome, report
from middleware.budget import RetryBudget
from middleware.contract import Handler
from middleware.message import NOTE_ATTEMPT, NOTE_RATE_LIMIT_WAIT, Request, Response

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

_BUDGET_SPENT = Decision(False, reason="retry_budget_spent")
_NOT_RETRYABLE = Decision(False, reason="not_retryable")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry rules as a value: what to retry, how often, how long to wait."""

    max_retries: int = 4
    backoff_base: float = 0.25
    backoff_cap: float = 20.0
    max_retry_after: float = 60.0
    rate_limit_statuses: frozenset[int] = frozenset({429})
    """The statuses that mean "throttled": an `Outcome` is judged against them once."""
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
    jitter: tenacity.wait_random_exponential = field(init=False, compare=False, repr=False)
    """The backoff without a ``Retry-After``: full jitter over ``backoff_base * 2**(n-1)``,
    capped at ``backoff_cap``, before retry ``n``."""

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
        object.__setattr__(
            self,
            "jitter",
            tenacity.wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_cap),
        )

    def may_retry(self, request: Request, outcome: Outcome) -> bool:
        """Whether this kind of outcome may be answered by sending ``request`` again."""
        if outcome.error is not None:
            return outcome.error.retry_can_help and (
                not outcome.may_have_reached_server or request.method in self.idempotent_methods
            )
        if outcome.throttled:
            return True
        return (
            outcome.status in self.server_error_statuses
            and request.method in self.idempotent_methods
        )

    def backoff(self, retry_number: int) -> float:
        """A draw of `jitter` before retry ``retry_number`` (1-based)."""
        state = tenacity.RetryCallState(_OUTSIDE_A_LOOP, None, (), {})
        state.attempt_number = retry_number
        return self.jitter(state)

    def worst_backoff(self) -> float:
        """The longest the backoff alone can make a call wait, over all its retries."""
        return float(
            sum(min(self.backoff_cap, self.backoff_base * 2**n) for n in range(self.max_retries))
        )

    def decide(self, request: Request, outcome: Outcome, now: float, wait: float) -> Decision:
        """The one judgement of ``outcome``: whether ``request`` is sent again after ``wait``
        seconds (its ``Retry-After``, or the backoff drawn), ``now`` being `time.monotonic`.
        Whether the retry budget must pay is said; paying is the caller's."""
        if not self.may_retry(request, outcome):
            return _NOT_RETRYABLE
        if outcome.number > self.max_retries:
            return Decision(False, reason="max_retries")
        asked = outcome.retry_after
        if asked is not None and asked > self.max_retry_after:
            return Decision(False, reason="retry_after_too_long")
        if request.deadline is not None and now + wait >= request.deadline:
            return Decision(False, reason="deadline")
        paced = outcome.throttled and (
            self.paced_by_limiter or (asked is not None and asked >= self.paced_retry_after)
        )
        return Decision(True, wait, needs_budget=not paced)


_OUTSIDE_A_LOOP = tenacity.Retrying()
"""The controller `RetryPolicy.backoff` names when it draws a wait outside a retry loop."""


class _AskPolicy(tenacity.retry_base):
    """tenacity's ``retry``: the policy says whether this kind of outcome may be retried."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        future = retry_state.outcome
        assert future is not None
        if future.failed:
            return False  # no attempt's outcome (a refusal before sending): passed on
        request: Request = retry_state.args[0]
        return self._policy.may_retry(request, future.result())


class _RetryAfterOrBackoff(wait_base):
    """tenacity's ``wait``: the answer's ``Retry-After``, else the policy's jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._jitter = policy.jitter

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        assert retry_state.outcome is not None
        asked: float | None = retry_state.outcome.result().retry_after
        return self._jitter(retry_state) if asked is None else asked


class _Stop(stop_base):
    """tenacity's ``stop``: the policy's limits (attempts, ``Retry-After``, deadline) on the
    wait tenacity drew, then the budget. Runs after the wait is drawn (tenacity >= 8.3)."""

    def __init__(self, policy: RetryPolicy, budget: RetryBudget) -> None:
        self._policy = policy
        self._budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        assert retry_state.outcome is not None
        outcome: Outcome = retry_state.outcome.result()
        request: Request = retry_state.args[0]
        decision = self._policy.decide(
            request, outcome, time.monotonic(), retry_state.upcoming_sleep
        )
        if decision.retry and decision.needs_budget and not self._budget.try_withdraw():
            decision = _BUDGET_SPENT  # the one charge: a retry the policy allows, not paced
        outcome.decision = decision
        return not decision.retry


class _FirstThenNew:
    """tenacity's attempt function for a call whose first attempt was made before the loop:
    that attempt's `Outcome` first, then a new attempt each time."""

    __slots__ = ("_attempt", "_first")

    def __init__(self, attempt: Callable[[Request, Handler], Outcome], first: Outcome) -> None:
        self._attempt = attempt
        self._first: Outcome | None = first

    def __call__(self, request: Request, call_next: Handler) -> Outcome:
        first, self._first = self._first, None
        return self._attempt(request, call_next) if first is None else first


def _retrying_attempt(retry_state: tenacity.RetryCallState) -> None:
    """tenacity's ``before_sleep``: report the attempt a retry follows, before the wait."""
    assert retry_state.outcome is not None
    report(retry_state.args[0], retry_state.outcome.result())


def _stopped_attempt(retry_state: tenacity.RetryCallState) -> Outcome:
    """tenacity's ``retry_error_callback``: report the attempt the stop ended; the loop
    returns it (the layer answers or raises it) instead of raising tenacity's RetryError."""
    assert retry_state.outcome is not None
    outcome: Outcome = retry_state.outcome.result()
    report(retry_state.args[0], outcome)
    return outcome


class Retry:
    """The retry middleware; see the module docstring for the rules and how tenacity runs them."""

    name = "retry"

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.budget = budget or RetryBudget()
        self._retryable = self.policy.retryable_statuses
        self._throttled = self.policy.rate_limit_statuses
        self._retrying = tenacity.Retrying(
            sleep=sleep,
            retry=_AskPolicy(self.policy),
            wait=_RetryAfterOrBackoff(self.policy),
            stop=_Stop(self.policy, self.budget),
            before_sleep=_retrying_attempt,
            retry_error_callback=_stopped_attempt,
        )

    def __call__(self, request: Request, call_next: Handler) -> Response:
        self.budget.deposit()
        outcome = self._attempt(request, call_next)
        if outcome.error is not None or outcome.status in self._retryable:
            outcome = self._retrying(_FirstThenNew(self._attempt, outcome), request, call_next)
        if outcome.decision is None:  # the final attempt, no retry was for: the tail
            if outcome.error is not None or outcome.status in self._retryable:
                outcome.decision = _NOT_RETRYABLE
            report(request, outcome)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.response is not None
        return outcome.response

    def _attempt(self, request: Request, call_next: Handler) -> Outcome:
        """One attempt down the pipeline, as the `Outcome` it came to."""
        notes = request.notes
        number = notes[NOTE_ATTEMPT] = notes.get(NOTE_ATTEMPT, 0) + 1
        notes[NOTE_RATE_LIMIT_WAIT] = 0.0
        begun = time.perf_counter()
        try:
            response = call_next(request)
        except ATTEMPT_ERRORS as exc:
            return self._failed(request, number, exc, begun)
        status = response.status
        return Outcome(
            number=number,
            response=response,
            error=None,
            status=status,
            retry_after=response.retry_after if status >= 400 else None,
            may_have_reached_server=True,
            duration=time.perf_counter() - begun,
            rate_limit_wait=notes[NOTE_RATE_LIMIT_WAIT],
            throttled=status in self._throttled,
        )

    def _failed(
        self, request: Request, number: int, error: AttemptError, begun: float
    ) -> Outcome:
        """The `Outcome` of an attempt that failed with ``error``."""
        return Outcome(
            number=number,
            response=None,
            error=error,
            status=error.status,
            retry_after=None,
            may_have_reached_server=error.may_have_reached_server,
            duration=time.perf_counter() - begun,
            rate_limit_wait=request.notes[NOTE_RATE_LIMIT_WAIT],
            throttled=False,
        )

    def __repr__(self) -> str:
        return f"<Retry max_retries={self.policy.max_retries} {self.budget!r}>"
