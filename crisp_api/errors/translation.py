"""The one table turning the pipeline's errors (`middleware`) into the client's (`RouteError`).

The pipeline knows nothing of Crisp: it says what happened to an exchange (no connection, a
timeout, a body beyond the limit, a limiter that would wait too long). A Crisp call raises
only `RouteError`s; each pipeline error becomes one here, the first row whose class matches
(rows go from the most specific class to the most general), keeping its status, its wait and
the route called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crisp_api.errors.route import (
    NetworkError,
    ProxyError,
    QuotaExceededError,
    QuotaSpentError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RouteError,
)
from middleware import (
    BodyTooLargeError,
    DeadlineExceededError,
    PipelineError,
    ProxyConnectError,
    QuotaExhaustedError,
    RateLimitWaitError,
    ReadTimeoutError,
    ServerQuotaSpentError,
    TransportError,
)

Build = Callable[[Any, str, str], RouteError]
"""Builds the client's error from the pipeline's, the method and the route template."""

PIPELINE_ERRORS: tuple[tuple[type[PipelineError], Build], ...] = (
    (ReadTimeoutError, lambda e, method, route: RequestTimeoutError(
        e.detail, status=e.status, method=method, route=route)),
    (DeadlineExceededError, lambda e, method, route: RequestTimeoutError(
        e.detail, status=e.status, method=method, route=route)),
    (ProxyConnectError, lambda e, method, route: ProxyError(
        e.detail, status=e.status, method=method, route=route)),
    (TransportError, lambda e, method, route: NetworkError(
        e.detail, status=e.status, method=method, route=route)),
    (BodyTooLargeError, lambda e, method, route: ResponseTooLargeError(
        f"body larger than {e.limit} bytes", status=e.status, method=method, route=route)),
    (QuotaExhaustedError, lambda e, method, route: QuotaExceededError(
        "daily_quota_exceeded", method=method, route=route, retry_after=e.reset_in,
        reset_at=e.reset_at)),
    (ServerQuotaSpentError, lambda e, method, route: QuotaSpentError(
        "daily_quota_spent", method=method, route=route, retry_after=e.reset_in,
        reset_at=e.reset_at)),
    (RateLimitWaitError, lambda e, method, route: RateLimitedError(
        "client_rate_limited", method=method, route=route, retry_after=e.wait)),
)


def translated(error: PipelineError, method: str, route: str) -> RouteError:
    """The client's error for ``error`` (a pipeline error of a call of ``route``)."""
    for kind, build in PIPELINE_ERRORS:
        if isinstance(error, kind):
            return build(error, method, route)
    return NetworkError(str(error), method=method, route=route)
