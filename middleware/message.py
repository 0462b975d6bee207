"""The two values that travel through a pipeline: `Request` going in, `Response` coming out.

Both are plain slotted classes rather than dataclasses: a request is built on every call, and
slots with a hand-written ``__init__`` keep that construction as cheap as Python allows.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from urllib3 import Timeout


@dataclass(slots=True)
class Attempt:
    """What one attempt of a retried call did; the retry middleware records these."""

    number: int
    status: int | None
    error: str | None
    duration_ms: float
    rate_limit_wait_ms: float


class Request:
    """One HTTP call as the pipeline sees it.

    ``origin`` (``scheme://host:port``) and ``path`` (path plus query string) are kept apart so
    the transport can pick its connection pool without parsing a URL. ``route`` is the path
    template (``/website/{website_id}``) used in logs instead of the concrete path. The cache
    reads ``partition`` (whose data this is: credentials and tier, never the key) and ``group``
    (the resource family a write invalidates, e.g. a website id). Middlewares leave notes for
    outer layers in ``cache_status``, ``rate_limit_wait`` and ``attempts``.
    """

    __slots__ = (
        "attempts",
        "body",
        "cache_status",
        "group",
        "headers",
        "method",
        "origin",
        "partition",
        "path",
        "rate_limit_wait",
        "route",
        "timeout",
        "use_cache",
    )

    def __init__(
        self,
        method: str,
        origin: str,
        path: str,
        *,
        route: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: Timeout | None = None,
        partition: Hashable = None,
        group: str | None = None,
        use_cache: bool = True,
    ) -> None:
        self.method = method
        self.origin = origin
        self.path = path
        self.route = path if route is None else route
        self.headers: dict[str, str] = {} if headers is None else headers
        self.body = body
        self.timeout = timeout
        self.partition = partition
        self.group = group
        self.use_cache = use_cache
        self.cache_status: str | None = None
        self.rate_limit_wait = 0.0
        self.attempts: list[Attempt] | None = None

    @property
    def url(self) -> str:
        """The full URL (origin plus path and query)."""
        return self.origin + self.path

    @property
    def is_write(self) -> bool:
        """Whether this method changes state on the server (POST, PUT, PATCH, DELETE)."""
        return self.method not in _READ_METHODS

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.route}>"


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


NOT_DECODED: object = object()
"""The value of `Response.decoded` until a layer decodes the body."""


class Response:
    """An HTTP answer: status, headers and the raw body bytes (decoded later, once).

    ``decoded`` holds what a layer decoded from the body when it had to look inside (the cache
    checks that an answer is a success worth keeping), so the caller reuses it instead of
    parsing the body a second time; it is `NOT_DECODED` until then, and again once the caller
    took it. A cache stores a copy without it, so no two callers share decoded objects.
    """

    __slots__ = ("body", "decoded", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.decoded: object = NOT_DECODED

    def __repr__(self) -> str:
        return f"<Response {self.status} ({len(self.body)} bytes)>"
