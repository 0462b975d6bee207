"""Exceptions raised by the client (all subclasses of `RouteError`)."""

from crisp_api.errors.route import (
    BadRequestError,
    ForbiddenError,
    InvalidResponseError,
    MissingCredentialsError,
    NetworkError,
    NotFoundError,
    ProxyError,
    QuotaExceededError,
    QuotaSpentError,
    RateLimitedError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RouteError,
    ServerError,
    UnauthorizedError,
)

__all__ = [
    "BadRequestError",
    "ForbiddenError",
    "InvalidResponseError",
    "MissingCredentialsError",
    "NetworkError",
    "NotFoundError",
    "ProxyError",
    "QuotaExceededError",
    "QuotaSpentError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RouteError",
    "ServerError",
    "UnauthorizedError",
]
