"""The exceptions a Crisp call raises; `RouteError` is the base of all of them::

    RouteError                      a Crisp call failed
    ├── BadRequestError             400, and other 4xx without a class of their own
    ├── UnauthorizedError           401: credentials or tier (the message names the tier)
    │   └── MissingCredentialsError no credentials given: nothing was sent
    ├── ForbiddenError              402/403: plan, scope or permission
    ├── NotFoundError               404 (and HEAD routes for a missing resource)
    ├── RateLimitedError            429/420 after retries, or the client's own limiter
    │   └── QuotaSpentError         Crisp's daily quota is spent (nothing sent until reset_at)
    │       └── QuotaExceededError  the configured daily_quota is spent (nothing sent)
    ├── ServerError                 5xx after retries (HTML pages of load balancers too)
    ├── NetworkError                no usable answer: refused, dropped, TLS
    │   ├── ProxyError              the proxy is unreachable or refused the tunnel (unsent)
    │   └── RequestTimeoutError     no answer in time, or the call's deadline passed
    └── InvalidResponseError        an answer that is not a Crisp envelope
        └── ResponseTooLargeError   a body beyond ``max_body`` (not read)

Which status gives which class is decided in `crisp_api.envelope`; which failure of the
pipeline gives which class, in `crisp_api.errors.translation`.

Each carries the HTTP ``status`` (``None`` when no answer came), Crisp's ``reason`` string,
the ``method`` and the ``route`` template called, for answers that could not be read a
short ``snippet`` of the body, and ``retry_after``, the wait in seconds the server (or the
client's limiter) asked for, when one was given: a 429 and a 503 asking for longer than the
client may wait both fail at once with it. None of them ever holds a credential or a request
body.

For code written against the official client (1.1.x), ``args[0]`` keeps that client's shape,
a dict: ``{"reason": "error", "message": reason, "code": status (500 when no answer came),
"data": {"namespace": "response" or "request", "message": ...}}``, so ``e.args[0]["code"]``
works as it did; ``str(e)`` is this client's one-line message.
"""

from __future__ import annotations

from typing import Any


class RouteError(Exception):
    """A Crisp API call failed."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        method: str = "",
        route: str = "",
        snippet: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        where = f" {method} {route}" if method else ""
        code = f" {status}" if status is not None else ""
        super().__init__(_official_shape(reason, status))
        self.message = f"{reason} ({code.strip() or 'no answer'}{where})"
        self.reason = reason
        self.status = status
        self.method = method
        self.route = route
        self.snippet = snippet
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the reason and the attributes, not from ``args`` (the legacy dict).
        fields = {name: getattr(self, name) for name in _FIELDS}
        return (_rebuilt, (type(self), self.reason, fields))


_FIELDS = ("status", "method", "route", "snippet", "retry_after")


def _rebuilt(kind: type[RouteError], reason: str, fields: dict[str, Any]) -> RouteError:
    """A `RouteError` back from a pickle."""
    return kind(reason, **fields)


def _official_shape(reason: str, status: int | None) -> dict[str, Any]:
    """The dict the official client put in ``args[0]`` (see the module docstring)."""
    answered = status is not None
    return {
        "reason": "error",
        "message": reason,
        "code": status if answered else 500,
        "data": {
            "namespace": "response" if answered else "request",
            "message": f"Got response error: {reason}" if answered else "Got request error",
        },
    }


class BadRequestError(RouteError):
    """The API refused the request's content (400, and other 4xx without a class of their own)."""


class UnauthorizedError(RouteError):
    """401: missing or wrong credentials, or a tier that does not match the token.

    ``tier`` is the tier the request was sent as, when the client knows it; the message then
    names it and says how to change it (a token works on its own tier only). It never holds
    the identifier or the key.
    """

    def __init__(self, reason: str, *, tier: str | None = None, **fields: Any) -> None:
        super().__init__(reason, **fields)
        self.tier = tier
        if tier is not None:
            self.message += f"; {tier_hint(tier)}"

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields["tier"] = self.tier
        return (_rebuilt, (type(self), self.reason, fields))


def tier_hint(tier: str) -> str:
    """What a 401 message says about the tier it was sent as (``Crisp()`` defaults to the
    user tier, as the official client does, while crisp-sync and the fake use plugin)."""
    return (f"sent as tier {tier!r} (Crisp() defaults to 'user'; crisp-sync and FakeCrisp use "
            "'plugin'): a token is valid on its own tier only; choose it with Crisp(tier=...), "
            "CRISP_TIER and Crisp.from_env(), set_tier() or authenticate_tier()")


CREDENTIALS_HOWTO = (
    "no credentials: give the token keypair with Crisp(identifier=..., key=..., tier=...), "
    "Crisp.from_env() (CRISP_IDENTIFIER and CRISP_KEY, with CRISP_TIER), authenticate() or "
    "authenticate_tier()"
)
"""How to give credentials, as `MissingCredentialsError` says it."""


class MissingCredentialsError(UnauthorizedError):
    """A call was made before any credentials were given, so it was not sent: Crisp answers
    every route of its API with a 401 without them. The message says how to give them."""

    def __init__(self, reason: str = "missing_credentials", **fields: Any) -> None:
        super().__init__(reason, **fields)
        where = f"{self.method} {self.route}: " if self.method else ""
        self.message = f"{CREDENTIALS_HOWTO} ({where}not sent)"


class ForbiddenError(RouteError):
    """402/403: the token may not do this (plan, scope or permission)."""


class NotFoundError(RouteError):
    """404: the resource (website, conversation, profile...) does not exist."""


class RateLimitedError(RouteError):
    """429 or 420, after retries; or the client's own limiter could not grant a token in time.

    ``retry_after`` is the wait the server (or the limiter) asked for, in seconds, if known.
    """


class QuotaSpentError(RateLimitedError):
    """A daily request quota is spent: the request was not sent, nor will any be until
    ``reset_at`` (epoch seconds), when the quota is expected to reset (``retry_after``: the
    seconds until then).

    Raised as such when Crisp's refusals showed its quota spent (`middleware.spent`: the
    expected reset is the next UTC midnight unless ``quota_reset`` says otherwise; Crisp does
    not document it), and as `QuotaExceededError` when the client's own ``daily_quota`` is.
    """

    def __init__(self, reason: str, *, reset_at: float, **fields: Any) -> None:
        super().__init__(reason, **fields)
        self.reset_at = reset_at

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields["reset_at"] = self.reset_at
        return (_rebuilt, (type(self), self.reason, fields))


class QuotaExceededError(QuotaSpentError):
    """The configured daily request quota (less its reserve) is spent; no further request
    was sent."""


class ServerError(RouteError):
    """5xx: the API or a load balancer in front of it failed (after retries, when allowed)."""


class NetworkError(RouteError):
    """No usable answer: the connection failed, broke, or the TLS handshake failed."""


class ProxyError(NetworkError):
    """The proxy (``proxy=``, or ``HTTPS_PROXY``/``HTTP_PROXY``) could not be reached, or
    refused to open a tunnel to Crisp: the request was not sent. The message names the proxy
    by its URL without credentials."""


class RequestTimeoutError(NetworkError):
    """The answer did not come within the timeout."""


class InvalidResponseError(RouteError):
    """An answer came but is not a Crisp envelope: not JSON, truncated, bad UTF-8, no data."""


class ResponseTooLargeError(InvalidResponseError):
    """The answer's body exceeds the client's size limit; it was not read."""
