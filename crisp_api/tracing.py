"""OpenTelemetry spans named after Crisp's routes: the `middleware.tracing.Tracing` layer,
given the catalogue's templates (``pip install 'crisp-api-next[otel]'``).

>>> client.use(tracing(), before="logging")  # doctest: +SKIP

puts the layer outermost, named ``tracing``: one span per call (``GET
/website/{website_id}/conversations/{page}``), its attempts as events, and the logging
layer's events inside the span's context. A call by concrete path (``client.get(...)``) whose
path matches no catalogue route is named by its method alone, so no id reaches a span name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crisp_api.extras import install_hint
from crisp_api.routing import CATALOGUE
from middleware.message import Request
from middleware.tracing import Tracing

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

_TEMPLATES = frozenset((route.method, route.template) for route in CATALOGUE)


def catalogue_route(request: Request) -> str | None:
    """The request's route if it is a template of the catalogue; None for anything else (a
    concrete path no route matched)."""
    return request.route if (request.method, request.route) in _TEMPLATES else None


def tracing(*, tracer_provider: TracerProvider | None = None) -> Tracing:
    """The tracing layer for a `crisp_api.Crisp` client (the global tracer provider unless
    ``tracer_provider`` is given); `ImportError` with the install line without the extra."""
    try:
        return Tracing(tracer_provider=tracer_provider, route=catalogue_route,
                       instrumentation="crisp_api")
    except ImportError as missing:
        raise ImportError(f"tracing needs opentelemetry-api: {install_hint('otel')}") from missing
