"""One OpenTelemetry span per call, named after its route template rather than its URL.

`Tracing` is an optional layer (it needs ``opentelemetry-api``; without it, building one is an
`ImportError` naming the package). Placed outermost, or at least outside the retry layer, it
makes one ``CLIENT`` span per call: ``GET /website/{website_id}/conversations/{page}``, not
``GET /v1/website/4f1c.../conversations/3``, so that calls group by what they do and no id
lands in a span name. Each attempt the retry layer makes is an event of that span
(``http.attempt``: its number, status or error, duration, and whether a retry followed and
after how long), and ``http.request.resend_count`` says how many attempts were resent.
OpenTelemetry's own urllib3 instrumentation, if installed too, adds one span per attempt
underneath, as children of this one (the transport runs inside it).

Attributes follow OpenTelemetry's HTTP semantic conventions for client spans:
``http.request.method``, ``url.template``, ``server.address``, ``server.port``,
``http.response.status_code`` and ``error.type`` (the status code of a 4xx or 5xx answer, or
the exception's class name). Deliberately absent: ``url.full`` and the query (ids, emails,
search text), headers (credentials) and bodies (message contents). No exception message is
recorded either; the span's status is ERROR with ``error.type`` as its description.

Which template names a call is the caller's to say (``route``): by default the request's
``route``, which the caller sets to the path template; a function returning None names the
span by its method alone (what the conventions ask when no template is known), for requests
whose route may be a concrete path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from urllib3.util import parse_url

from middleware.attempts import Outcome, listen
from middleware.contract import Handler
from middleware.message import NOTE_CACHE, Request, Response

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
                      "TRACE"})
"""The methods the conventions name as they are (any other is ``_OTHER``)."""


def request_route(request: Request) -> str | None:
    """The request's route template, as its caller set it."""
    return request.route


class Tracing:
    """Opens one span per call (see the module docstring); ``tracer_provider`` is the global
    one unless given, ``route`` names the call's template (None: unknown), and
    ``instrumentation`` names the tracer (the library whose calls these are)."""

    name = "tracing"

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        route: Callable[[Request], str | None] = request_route,
        instrumentation: str = "middleware",
    ) -> None:
        try:
            from opentelemetry import trace  # noqa: PLC0415 - optional
        except ImportError as missing:
            raise ImportError("the tracing layer needs opentelemetry-api") from missing
        self._trace = trace
        self._tracer = trace.get_tracer(instrumentation, tracer_provider=tracer_provider)
        self._route = route

    def __call__(self, request: Request, call_next: Handler) -> Response:
        method = request.method if request.method in _METHODS else "_OTHER"
        template = self._route(request)
        origin = parse_url(request.origin)
        attributes: dict[str, Any] = {"http.request.method": method}
        if template is not None:
            attributes["url.template"] = template
        if origin.host:
            attributes["server.address"] = origin.host
        if origin.port is not None:
            attributes["server.port"] = origin.port
        elif origin.scheme in ("http", "https"):
            attributes["server.port"] = 443 if origin.scheme == "https" else 80
        name = method if template is None else f"{method} {template}"
        with self._tracer.start_as_current_span(
            name, kind=self._trace.SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            attempts: list[Outcome] = []
            listen(request, lambda _, outcome: _attempted(span, attempts, outcome))
            try:
                response = call_next(request)
            except Exception as exc:
                self._failed(span, type(exc).__qualname__)
                raise
            finally:
                if len(attempts) > 1:
                    span.set_attribute("http.request.resend_count", len(attempts) - 1)
                if (cache := request.notes.get(NOTE_CACHE)) is not None:
                    span.set_attribute("middleware.cache", str(cache))
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                self._failed(span, str(response.status))
            return response

    def _failed(self, span: Span, error_type: str) -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error_type))

    def __repr__(self) -> str:
        return "<Tracing>"


def _attempted(span: Span, attempts: list[Outcome], outcome: Outcome) -> None:
    """Add the attempt that ended to the call's span, as an ``http.attempt`` event."""
    attempts.append(outcome)
    event: dict[str, Any] = {"http.attempt": outcome.number, "duration_s": outcome.duration}
    if outcome.status is not None:
        event["http.response.status_code"] = outcome.status
    if outcome.error_name is not None:
        event["error.type"] = outcome.error_name
    if outcome.rate_limit_wait:
        event["rate_limit_wait_s"] = outcome.rate_limit_wait
    decision = outcome.decision
    if decision is not None:
        event["retry"] = decision.retry
        if decision.retry:
            event["retry.wait_s"] = decision.wait
        elif decision.reason:
            event["retry.reason"] = decision.reason
    span.add_event("http.attempt", event)
