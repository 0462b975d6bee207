"""One structured event per attempt, through structlog, costing next to nothing when filtered.

Events carry the method, the route template (never the concrete path's query), status or error,
duration, attempt number, cache outcome and rate-limit wait; an attempt followed by a retry
also carries the wait before it (``retry_in_ms``), and the last one of a retried call says why
no retry followed (``gave_up``) when it failed. Headers and bodies are never logged, so neither
credentials nor message contents can leak through logs.

The event of an attempt is emitted when that attempt ends: the retry layer hands each ending
attempt of a retried call to this layer through the request's notes (`NOTE_ATTEMPT_ENDED`), so
a call throttled for a minute shows its warnings as they happen. A call that needed no retry
is logged once, when it returns.

By default events go to the standard library logger ``logger_name`` (with a ``NullHandler``),
so a library stays silent until the application configures logging. Pass any structlog
logger to route them elsewhere.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import structlog

from middleware.contract import Handler
from middleware.errors import PipelineError
from middleware.message import (
    NOTE_ATTEMPT,
    NOTE_ATTEMPT_ENDED,
    NOTE_CACHE,
    NOTE_RATE_LIMIT_WAIT,
    Request,
    Response,
)

if TYPE_CHECKING:
    from middleware.retry import Decision, Outcome

EVENT = "http.attempt"
_REPORTED = "logging.reported"
"""The note this layer leaves with the number of the last attempt the retry layer reported,
so the attempt that ends the call is logged exactly once."""


def default_logger(logger_name: str) -> Any:
    """A structlog logger over the stdlib logger ``logger_name``, rendering key=value text."""
    stdlib_logger = logging.getLogger(logger_name)
    if not any(isinstance(h, logging.NullHandler) for h in stdlib_logger.handlers):
        stdlib_logger.addHandler(logging.NullHandler())
    return structlog.wrap_logger(
        stdlib_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)],
    )


class StructuredLogging:
    """The logging middleware: outermost, so it sees the whole call, retries included.

    Successful attempts log at DEBUG, 4xx answers at INFO, and 5xx, rate-limit answers and
    transport failures at WARNING. A call whose level is filtered out costs one clock read
    and one level check.
    """

    name = "logging"

    def __init__(self, logger: Any = None, logger_name: str = "middleware") -> None:
        self.logger = logger if logger is not None else default_logger(logger_name)
        self._enabled = getattr(self.logger, "is_enabled_for", None)
        self._listener = self._attempt_ended  # bound once, not per request

    def _is_enabled(self, level: int) -> bool:
        return True if self._enabled is None else bool(self._enabled(level))

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        notes = request.notes
        notes[NOTE_ATTEMPT_ENDED] = self._listener
        try:
            response = call_next(request)
        except PipelineError as exc:
            if notes.get(_REPORTED) != notes.get(NOTE_ATTEMPT, 1):
                self._emit_last(request, None, type(exc).__name__, started)
            raise
        if notes.get(_REPORTED) != notes.get(NOTE_ATTEMPT, 1) and self._is_enabled(
            _status_level(response.status)
        ):
            self._emit_last(request, response.status, None, started)
        return response

    def _attempt_ended(
        self, request: Request, outcome: Outcome, decision: Decision | None
    ) -> None:
        """Log one attempt the retry layer reports as it ends."""
        request.notes[_REPORTED] = outcome.number
        level = _status_level(outcome.status if outcome.error is None else None)
        if not self._is_enabled(level):
            return
        retrying = decision is not None and decision.retry
        self.logger.log(
            level,
            EVENT,
            method=request.method,
            route=request.route,
            status=outcome.status,
            error=outcome.error_name,
            attempt=outcome.number,
            duration_ms=round(outcome.duration * 1000.0, 3),
            rate_limit_wait_ms=round(outcome.rate_limit_wait * 1000.0, 3),
            cache=request.notes.get(NOTE_CACHE),
            retry_in_ms=round(decision.wait * 1000.0, 3) if retrying and decision else None,
            gave_up=decision.reason if decision is not None and not decision.retry else None,
        )

    def _emit_last(
        self, request: Request, status: int | None, error: str | None, started: float
    ) -> None:
        """Log the attempt that ended the call, when no retry layer reported it."""
        level = _status_level(status)
        if not self._is_enabled(level):
            return
        notes = request.notes
        self.logger.log(
            level,
            EVENT,
            method=request.method,
            route=request.route,
            status=status,
            error=error,
            attempt=notes.get(NOTE_ATTEMPT, 1),
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            rate_limit_wait_ms=round(notes.get(NOTE_RATE_LIMIT_WAIT, 0.0) * 1000.0, 3),
            cache=notes.get(NOTE_CACHE),
            retry_in_ms=None,
            gave_up=None,
        )

    def __repr__(self) -> str:
        return f"<StructuredLogging {self.logger!r}>"


def _status_level(status: int | None) -> int:
    """DEBUG for success, INFO for client errors, WARNING for failures worth attention."""
    if status is None or status >= 500 or status in (420, 429):
        return logging.WARNING
    if status >= 400:
        return logging.INFO
    return logging.DEBUG
