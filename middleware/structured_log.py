"""One structured event per attempt, through structlog, costing next to nothing when filtered.

Events carry the method, the route template (never the concrete path's query), status or error,
duration, attempt number, cache outcome and rate-limit wait. Headers and bodies are never
logged, so neither credentials nor message contents can leak through logs.

By default events go to the standard library logger ``logger_name`` (with a ``NullHandler``),
so a library stays silent until the application configures logging. Pass any structlog
logger to route them elsewhere.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog

from middleware.contract import Handler
from middleware.errors import PipelineError
from middleware.message import Attempt, Request, Response

EVENT = "http.attempt"


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

    def _is_enabled(self, level: int) -> bool:
        return True if self._enabled is None else bool(self._enabled(level))

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        try:
            response = call_next(request)
        except PipelineError as exc:
            self._emit(request, None, type(exc).__name__, started)
            raise
        status = response.status
        if request.attempts is not None or self._is_enabled(_status_level(status)):
            self._emit(request, status, None, started)
        return response

    def _emit(
        self, request: Request, status: int | None, error: str | None, started: float
    ) -> None:
        """Log every attempt of the call whose level is enabled."""
        attempts = request.attempts or [
            Attempt(
                number=1,
                status=status,
                error=error,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                rate_limit_wait_ms=request.rate_limit_wait * 1000.0,
            )
        ]
        for attempt in attempts:
            level = _status_level(attempt.status)
            if not self._is_enabled(level):
                continue
            self.logger.log(
                level,
                EVENT,
                method=request.method,
                route=request.route,
                status=attempt.status,
                error=attempt.error,
                attempt=attempt.number,
                attempts=len(attempts),
                duration_ms=round(attempt.duration_ms, 3),
                rate_limit_wait_ms=round(attempt.rate_limit_wait_ms, 3),
                cache=request.cache_status,
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
