"""Failures the pipeline raises instead of answering; each says whether the server may have acted.

``may_have_reached_server`` is the fact the retry rules hinge on: a request that surely never
left (no connection) may be sent again whatever its method; one that may have been received
(read timeout, dropped connection) may only be repeated if the method is idempotent.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error raised by the generic pipeline."""


class TransportError(PipelineError):
    """The HTTP exchange failed without a usable answer.

    ``status`` is set when the failure came after the status line (a body cut short).
    ``retry_can_help`` is false for failures that would happen again the same way.
    """

    may_have_reached_server = True
    retry_can_help = True

    def __init__(self, message: str, method: str, route: str, status: int | None = None) -> None:
        super().__init__(f"{message} ({method} {route})")
        self.method = method
        self.route = route
        self.detail = message
        self.status = status


class ConnectError(TransportError):
    """No connection could be opened (refused, unresolvable, connect timeout): nothing was sent."""

    may_have_reached_server = False


class ProxyConnectError(ConnectError):
    """The proxy could not be reached, or would not open a tunnel to the server (its answer
    to CONNECT was not 200): nothing reached the server. The message names the proxy by its
    URL without credentials."""


class ReadTimeoutError(TransportError):
    """The request was sent but no answer came in time; the server may have acted on it."""


class ConnectionDroppedError(TransportError):
    """The connection broke during the exchange; the server may have acted on the request."""


class DeadlineExceededError(TransportError):
    """The call's deadline passed: before sending (nothing left the client), or while the
    answer was still arriving (the server may have acted). Never retried: no time is left."""

    retry_can_help = False

    def __init__(
        self, method: str, route: str, *, sent: bool, status: int | None = None
    ) -> None:
        super().__init__(
            "deadline exceeded" + (" while reading the answer" if sent else " before sending"),
            method, route, status,
        )
        self.may_have_reached_server = sent


class TLSError(TransportError):
    """The TLS handshake or certificate check failed; retrying cannot help."""

    may_have_reached_server = False
    retry_can_help = False


class BodyTooLargeError(PipelineError):
    """The answer's body is larger than the configured limit; it was not read (nor retried).
    (A client built on the pipeline names it its own way: `crisp_api` raises its
    ``ResponseTooLargeError``.)"""

    may_have_reached_server = True
    retry_can_help = False

    def __init__(self, limit: int, status: int, method: str, route: str) -> None:
        super().__init__(f"body larger than {limit} bytes ({status} {method} {route})")
        self.limit = limit
        self.status = status
        self.method = method
        self.route = route


class RateLimitWaitError(PipelineError):
    """The client-side rate limiter could not grant a token within the allowed wait (`crisp_api`
    raises it as its ``RateLimitedError``, as a 429 that retries could not get past)."""

    def __init__(self, wait: float, method: str, route: str) -> None:
        super().__init__(f"rate limit: next token in {wait:.3f}s ({method} {route})")
        self.wait = wait
        self.method = method
        self.route = route
