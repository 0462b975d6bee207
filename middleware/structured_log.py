"""One structured event per attempt, through structlog, costing next to nothing when filtered.

Events carry the method, the route template (never the concrete path's query), status or error,
duration, attempt number, cache outcome and rate-limit wait; an attempt followed by a retry
also carries the wait before it (``retry_in_ms``), and the last one of a call says why no
retry followed (``gave_up``) when it failed. Headers and bodies are never logged, so neither
credentials nor message contents can leak through logs.

This layer is an attempt listener (`middleware.attempts`): the retry layer tells it each
attempt's `Outcome` as the attempt ends, so a call throttled for a minute shows its attempts
as they happen, each judged once (throttled or not) by the layer that built it. A call that
made no attempt through a retry layer (a cache hit, a stack without one) or that ended in a
refusal before sending is logged once, when it returns.

By default events go to structlog once the application has configured structlog, and to the
standard library logger ``logger_name`` (with a ``NullHandler``) otherwise, so a library stays
silent until the application configures logging. Pass any structlog logger, or a standard
library ``logging.Logger``, to route them elsewhere (`structured`). Logging never fails a call:
an exception raised while logging is counted (``failures``) and dropped, since the request has
been sent by then and a failed-looking delivery invites a resend.

structlog is imported when it is first needed (a standard library logger to wrap, an event to
write), not with the client: it costs more than a third of ``import crisp_api`` (structlog
loads rich, when installed, for its console tracebacks), and most calls of a client nobody
logs need none of it. An application that configured structlog has imported it, so until
it is imported it cannot be configured.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import cached_property
from typing import Any

from middleware.attempts import ATTEMPT_ERRORS, Outcome, listen
from middleware.contract import Handler
from middleware.errors import PipelineError
from middleware.message import NOTE_ATTEMPT, NOTE_CACHE, NOTE_RATE_LIMIT_WAIT, Request, Response

EVENT = "http.attempt"


def structured(logger: Any, logger_name: str) -> Any:
    """The logger to write events to: a structlog logger (anything with ``log(level, event,
    **fields)``) as given; a standard library ``Logger`` or ``LoggerAdapter`` wrapped so that
    it takes fields (rendered as ``key=value`` text); None for the default (`DefaultLogger`).
    Anything else is refused at once (TypeError), not at the first request."""
    if logger is None:
        return DefaultLogger(logger_name)
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        return _key_value(logger)
    if not callable(getattr(logger, "log", None)):
        raise TypeError(
            "logger must be a structlog logger or a logging.Logger, "
            f"got {type(logger).__name__}"
        )
    return logger


def _key_value(stdlib_logger: logging.Logger | logging.LoggerAdapter[Any]) -> Any:
    """A structlog logger over a standard library one, rendering ``event key=value ...``."""
    import structlog  # noqa: PLC0415 - imported when first needed (see the module docstring)

    return structlog.wrap_logger(
        stdlib_logger,
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True)],
    )


class DefaultLogger:
    """Where events go when no logger is given: structlog's own loggers once the application
    has configured structlog (``structlog.configure``), else the standard library logger
    ``name``, which has a ``NullHandler`` and so stays silent until logging is configured.

    Its structlog logger is one lazy proxy (``structlog.get_logger``), kept: the proxy
    follows the configuration as structlog documents, binding on every use, or once when the
    application sets ``cache_logger_on_first_use``. A proxy asked for on every attempt would
    bind every time whatever the application chose (3.6 µs an attempt against 1.2 µs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        stdlib_logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in stdlib_logger.handlers):
            stdlib_logger.addHandler(logging.NullHandler())
        self._stdlib = stdlib_logger

    @cached_property
    def _fallback(self) -> Any:
        """The standard library logger, wrapped once an event is written to it."""
        return _key_value(self._stdlib)

    @cached_property
    def _structlog(self) -> Any:
        """structlog's lazy proxy for ``name``, made once structlog is configured."""
        import structlog  # noqa: PLC0415 - imported already: the application configured it

        return structlog.get_logger(self.name)

    def _target(self) -> Any:
        return self._structlog if _configured_structlog() is not None else self._fallback

    def is_enabled_for(self, level: int) -> bool:
        """Whether an event of ``level`` would go anywhere (cheap: checked before building
        the event)."""
        if _configured_structlog() is None:
            return self._stdlib.isEnabledFor(level)
        check = getattr(self._structlog, "is_enabled_for", None)
        return True if check is None else bool(check(level))

    def log(self, level: int, event: str, **fields: Any) -> Any:
        """Write one event where events go now (`where`)."""
        return self._target().log(level, event, **fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)

    def __repr__(self) -> str:
        return f"<DefaultLogger to {self.where()}>"

    def where(self) -> str:
        """Where events go now, in words."""
        return "structlog" if _configured_structlog() is not None else f"logging {self.name!r}"


def _configured_structlog() -> Any:
    """structlog's module once the application has configured it, else None, without
    importing it (see the module docstring). Once another thread has begun importing it,
    the import statement waits for that import to end: the module in ``sys.modules`` is
    not whole before (``is_configured`` not yet defined)."""
    if "structlog" not in sys.modules:
        return None
    import structlog  # noqa: PLC0415 - imported already, or being imported by another thread

    return structlog if structlog.is_configured() else None


class StructuredLogging:
    """The logging middleware: outermost, so it sees the whole call, retries included.

    An attempt a retry follows logs at INFO (the call goes on); an attempt that ends the call
    logs at DEBUG for a success, INFO for a 4xx answer, and WARNING for a 5xx, a throttled
    answer or a transport failure. A call whose level is filtered out costs one clock read
    and one level check per attempt.
    """

    name = "logging"

    def __init__(self, logger: Any = None, logger_name: str = "middleware") -> None:
        self.logger = structured(logger, logger_name)
        self._enabled = getattr(self.logger, "is_enabled_for", None)
        self._listener = self._attempt_ended  # bound once, not per request
        self.failures = 0
        """Events that could not be logged (the logger raised); the calls went on."""

    def _is_enabled(self, level: int) -> bool:
        return True if self._enabled is None else bool(self._enabled(level))

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        notes = request.notes
        listen(request, self._listener)
        try:
            response = call_next(request)
        except PipelineError as exc:
            if NOTE_ATTEMPT not in notes or not isinstance(exc, ATTEMPT_ERRORS):
                self._emit_call(request, None, type(exc).__name__, started)
            raise
        if NOTE_ATTEMPT not in notes and self._is_enabled(_status_level(response.status)):
            self._emit_call(request, response.status, None, started)
        return response

    def _attempt_ended(self, request: Request, outcome: Outcome) -> None:
        """Log one attempt as it ends (an attempt listener)."""
        decision = outcome.decision
        retrying = decision is not None and decision.retry
        level = logging.INFO if retrying else _outcome_level(outcome)
        if not self._is_enabled(level):
            return
        self._log(
            level,
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

    def _emit_call(
        self, request: Request, status: int | None, error: str | None, started: float
    ) -> None:
        """Log a call no attempt of which was reported (see the module docstring)."""
        level = _status_level(status)
        if not self._is_enabled(level):
            return
        notes = request.notes
        self._log(
            level,
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

    def _log(self, level: int, **fields: Any) -> None:
        """Write one event; a logger that raises is counted, never passed on to the call."""
        try:
            self.logger.log(level, EVENT, **fields)
        except Exception:  # see the module docstring: logging never fails a call
            self.failures += 1

    def __repr__(self) -> str:
        return f"<StructuredLogging to {_described(self.logger)}>"


def _described(logger: Any) -> str:
    """A logger in a few words (a structlog proxy's own repr is a wall of internals)."""
    if isinstance(logger, DefaultLogger):
        return logger.where()
    wrapped = getattr(logger, "_logger", None)
    if isinstance(wrapped, logging.Logger):
        return f"logging {wrapped.name!r}"
    return type(logger).__name__


def _outcome_level(outcome: Outcome) -> int:
    """The level of an attempt that ends its call: a throttled answer is worth attention."""
    if outcome.error is not None or outcome.throttled:
        return logging.WARNING
    return _status_level(outcome.status)


def _status_level(status: int | None) -> int:
    """DEBUG for success, INFO for client errors, WARNING for failures worth attention."""
    if status is None or status >= 500:
        return logging.WARNING
    if status >= 400:
        return logging.INFO
    return logging.DEBUG
