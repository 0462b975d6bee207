"""The two values that travel through a pipeline: `Request` going in, `Response` coming out.

Both are plain slotted classes rather than dataclasses: a request is built on every call, and
slots with a hand-written ``__init__`` keep that construction as cheap as Python allows.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from urllib3 import HTTPHeaderDict, Timeout

from middleware.retry_after import retry_after_seconds


class Request:
    """One HTTP call as the pipeline sees it.

    ``origin`` (``scheme://host:port``) and ``path`` (path plus query string) are kept apart so
    the transport can pick its connection pool without parsing a URL. ``route`` is the path
    template (``/website/{website_id}``) used in logs instead of the concrete path. The cache
    reads ``partition`` (whose data this is: credentials and tier, never the key) and ``group``
    (the resource family a write invalidates, e.g. a website id). ``deadline`` is the
    `time.monotonic` instant by which the whole call (every attempt, wait and pause) must end,
    or None for no bound.

    ``notes`` is the one place where layers leave what they learnt for the layers around them,
    like httpx's ``request.extensions``; the keys the built-in layers use are the ``NOTE_*``
    constants of this module.
    """

    __slots__ = (
        "body",
        "deadline",
        "group",
        "headers",
        "method",
        "notes",
        "origin",
        "partition",
        "path",
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
        deadline: float | None = None,
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
        self.deadline = deadline
        self.notes: dict[str, Any] = {}

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

NOTE_CACHE = "cache"
"""What the cache did with the call: ``"hit"``, ``"miss"`` or ``"bypass"``."""
NOTE_RATE_LIMIT_WAIT = "rate_limit_wait"
"""Seconds the current attempt really waited for its rate-limit turn, measured by the layer
that waited (reset by the retry layer before each attempt)."""
NOTE_ATTEMPT = "attempt"
"""The number (1-based) of the attempt in flight or last made, set by the retry layer."""
NOTE_ATTEMPT_LISTENERS = "attempt_listeners"
"""The attempt listeners outer layers subscribed for this call (`middleware.attempts.listen`):
the retry layer tells each of them every attempt's `Outcome` as the attempt ends."""


NOT_DECODED: object = object()
"""The value of `Response.decoded` until a layer decodes the body."""


class Response:
    """An HTTP answer: status, headers and the raw body bytes (decoded later, once).

    ``headers`` is case-insensitive by contract: any mapping given is wrapped in urllib3's
    `HTTPHeaderDict` (the transport's own answers already are one, at no cost), so every
    layer may look up ``"retry-after"`` whatever case the server or a test used.

    ``retry_after`` is the header of that name, parsed on first use and kept, so the layers
    that each need it (rate limit, retry, error mapping) parse it once between them.

    ``decoded`` holds what a layer decoded from the body when it had to look inside (the cache
    checks that an answer is a success worth keeping), so the caller reuses it instead of
    parsing the body a second time; it is `NOT_DECODED` until then, and again once the caller
    took it. A cache stores a copy without it, so no two callers share decoded objects.
    """

    __slots__ = ("_retry_after", "body", "decoded", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers: HTTPHeaderDict = (
            headers if isinstance(headers, HTTPHeaderDict) else HTTPHeaderDict(headers)
        )
        self.body = body
        self.decoded: object = NOT_DECODED
        self._retry_after: float | object | None = NOT_DECODED

    @property
    def retry_after(self) -> float | None:
        """The ``Retry-After`` wait in seconds (None: absent or malformed), parsed once."""
        value = self._retry_after
        if value is NOT_DECODED:
            value = self._retry_after = retry_after_seconds(self.headers)
        assert value is None or isinstance(value, float)
        return value

    def __repr__(self) -> str:
        return f"<Response {self.status} ({len(self.body)} bytes)>"
