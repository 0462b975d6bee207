"""What an attempt came to (`Outcome`), what the retry layer did next (`Decision`), who is told.

The retry layer builds one `Outcome` per attempt that reached the network (an answer, or a
failure of the exchange): its status, its ``Retry-After`` parsed once, whether it was throttled
(judged once, from the one status set the stack gives the retry policy), its error, whether the
request may have reached the server, and its timings. Every later reader, the retry policy
first, reads those fields instead of working them out again from the response.

Attempt listeners are told each `Outcome` as its attempt ends (before any wait for the next
one), with the `Decision` taken on it. An outer layer subscribes for one call with `listen`;
the logs, the request counters and the Prometheus metrics are such listeners. An attempt the
client refused before sending (its rate limiter, a spent quota) has no `Outcome`: nothing
reached the network. A stack without a retry layer reports no attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from middleware.errors import BodyTooLargeError, TransportError
from middleware.message import NOTE_ATTEMPT_LISTENERS, Request, Response

AttemptError = TransportError | BodyTooLargeError
"""A failure that ends an attempt which reached the network (or tried to): an `Outcome` of it."""
ATTEMPT_ERRORS = (TransportError, BodyTooLargeError)
"""`AttemptError`'s classes, to catch."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the retry layer did after an `Outcome`."""

    retry: bool
    wait: float = 0.0
    """Seconds to sleep before the retry."""
    needs_budget: bool = True
    reason: str = ""
    """Why not, when ``retry`` is false (``"not_retryable"``, ``"max_retries"``,
    ``"retry_after_too_long"``, ``"deadline"``, ``"retry_budget_spent"``)."""


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, built once and read by every decision and every listener."""

    number: int
    """1-based attempt number."""
    response: Response | None
    error: AttemptError | None
    status: int | None
    """The answer's status, or the status line seen before a failure, if any."""
    retry_after: float | None
    """The answer's ``Retry-After`` in seconds; None if absent or malformed."""
    may_have_reached_server: bool
    duration: float
    """Seconds from the attempt's start to its end."""
    rate_limit_wait: float
    """Seconds of that spent waiting for a rate-limit turn."""
    throttled: bool = False
    """The answer is a rate-limit refusal (429, or a status such as Crisp's 420)."""
    decision: Decision | None = None
    """What the retry layer did next, once it decided; None for an answer that needed no
    decision (a success, or a status no retry is ever for)."""

    @property
    def error_name(self) -> str | None:
        """The failure's class name, for logs; None for an answer."""
        return None if self.error is None else type(self.error).__name__


AttemptListener = Callable[[Request, Outcome], None]
"""Told each ending attempt of a call: the request and the attempt's `Outcome`."""


def listen(request: Request, listener: AttemptListener) -> None:
    """Have ``listener`` told every attempt of ``request`` that the retry layer makes."""
    notes = request.notes
    notes[NOTE_ATTEMPT_LISTENERS] = (*notes.get(NOTE_ATTEMPT_LISTENERS, ()), listener)


def report(request: Request, outcome: Outcome) -> None:
    """Tell ``request``'s listeners that the attempt of ``outcome`` ended."""
    for listener in request.notes.get(NOTE_ATTEMPT_LISTENERS, ()):
        listener(request, outcome)
