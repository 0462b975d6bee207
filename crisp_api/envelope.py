"""Turning an HTTP answer into the envelope's ``data``, or into the right `RouteError`.

Crisp answers ``{"error": bool, "reason": str, "data": ...}``. Anything else (an HTML page from
a load balancer, a truncated or empty body, invalid UTF-8, JSON without ``data``, another
content type, JSON nested too deeply to read) becomes an `InvalidResponseError`, or the
status's own error class when the status already says the call failed, always with a short
snippet of what came back.

`is_success` is the check the response cache runs before keeping an answer: it decodes the
answer once, keeps the result on the response for `decode` to hand out, and says whether the
answer is a success (only those are cached).
"""

from __future__ import annotations

from typing import Any

from crisp_api.defaults import RATE_LIMIT_STATUSES
from crisp_api.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RouteError,
    ServerError,
    UnauthorizedError,
)
from crisp_api.json_codec import parse
from middleware import NOT_DECODED, Response

SNIPPET_LENGTH = 200


_STATUS_REASONS = {
    400: "invalid_data",
    401: "unauthorized",
    402: "payment_required",
    403: "not_allowed",
    404: "not_found",
    420: "rate_limited",
    429: "rate_limited",
}


def decode(response: Response, method: str, route: str, tier: str | None = None) -> Any:
    """The ``data`` of a successful answer; raises the matching `RouteError` otherwise (a
    401 names ``tier``, the tier the request was sent as, when given)."""
    decoded = response.decoded
    if decoded is not NOT_DECODED:
        response.decoded = NOT_DECODED  # handed out once: no two callers share its objects
        return decoded
    return _decode(response, method, route, tier)


def is_success(response: Response) -> bool:
    """Whether ``response`` decodes as a successful envelope (its ``data`` is kept on it)."""
    try:
        response.decoded = _decode(response, "GET", "")
    except RouteError:
        return False
    return True


def _decode(response: Response, method: str, route: str, tier: str | None = None) -> Any:
    status = response.status
    if method == "HEAD":
        if 200 <= status < 300:
            return {}
        raise error_for(response, _STATUS_REASONS.get(status, "http_error"), method, route,
                        tier=tier)
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        raise _unreadable(response, f"unexpected content type {content_type!r}", method, route,
                          tier)
    try:
        payload = parse(response.body)
    except ValueError:
        raise _unreadable(response, "invalid JSON body", method, route, tier) from None
    except RecursionError:
        raise _unreadable(response, "JSON nested too deeply", method, route, tier) from None
    if not isinstance(payload, dict):
        raise _unreadable(response, "JSON body is not an envelope object", method, route, tier)
    if status >= 400 or payload.get("error") is True:
        reason = payload.get("reason")
        if not isinstance(reason, str) or not reason:
            reason = _STATUS_REASONS.get(status, "http_error")
        raise error_for(response, reason, method, route, tier=tier)
    if not 200 <= status < 300:
        raise _unreadable(response, f"unexpected status {status}", method, route)
    if "data" not in payload:
        raise _unreadable(response, "envelope has no data", method, route)
    return payload["data"]


def error_for(
    response: Response,
    reason: str,
    method: str,
    route: str,
    snippet: str | None = None,
    *,
    tier: str | None = None,
) -> RouteError:
    """The exception class that the answer's status calls for (a 401 names ``tier``)."""
    status = response.status
    cls: type[RouteError]
    if status in RATE_LIMIT_STATUSES:
        cls = RateLimitedError
    elif status == 401:
        return UnauthorizedError(reason, tier=tier, status=status, method=method, route=route,
                                 snippet=snippet, retry_after=response.retry_after)
    elif status in (402, 403):
        cls = ForbiddenError
    elif status == 404:
        cls = NotFoundError
    elif status >= 500:
        cls = ServerError
    elif status >= 400:
        cls = BadRequestError
    else:
        cls = RouteError
    return cls(
        reason,
        status=status,
        method=method,
        route=route,
        snippet=snippet,
        retry_after=response.retry_after,
    )


def _unreadable(
    response: Response, problem: str, method: str, route: str, tier: str | None = None
) -> RouteError:
    """A failed status keeps its own class; a 2xx that cannot be read is InvalidResponseError."""
    snippet = response.body[:SNIPPET_LENGTH].decode("utf-8", "replace")
    if response.status >= 400:
        return error_for(
            response, _STATUS_REASONS.get(response.status, "http_error"), method, route, snippet,
            tier=tier,
        )
    return InvalidResponseError(
        problem, status=response.status, method=method, route=route, snippet=snippet
    )
