"""crisp-api: a complete, resilient and fast client for the Crisp REST API v1, and for its
real-time events (`Crisp.events`, `crisp_api.events`).

>>> from crisp_api import Crisp
>>> client = Crisp()
>>> client.set_tier("plugin")
>>> client.authenticate(identifier, key)  # doctest: +SKIP
>>> client.website.get_conversation(website_id, session_id)  # doctest: +SKIP
"""

from crisp_api import installation  # noqa: F401 (refuses a clash with the official crisp-api)
from crisp_api._version import __version__
from crisp_api.client import Crisp
from crisp_api.errors import (
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
from crisp_api.events import (
    Event,
    EventsError,
    EventsTimeoutError,
    EventStream,
    EventsUnauthorizedError,
)

__all__ = [
    "BadRequestError",
    "Crisp",
    "Event",
    "EventStream",
    "EventsError",
    "EventsTimeoutError",
    "EventsUnauthorizedError",
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
    "__version__",
]
