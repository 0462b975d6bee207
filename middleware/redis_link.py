"""The Redis connection shared by the Redis backends, and how they carry on without Redis.

Redis is an optimisation: it lets a fleet of processes share one rate limit, one 429 pause and
one cache. It must never be the reason a request fails. So every Redis operation goes through
`RedisLink.run` with a local fallback:

* every connect and every reply has a short socket timeout, and redis-py's own retries are
  off (a script is never sent twice, so nothing is counted twice), so a dead or stalled Redis
  costs one timeout, not a retry loop; redis-py still replaces a pooled connection that Redis
  closed (say, in a restart) before using it;
* the first failure marks the link down and logs one warning (the address without
  credentials, and the error); the backends then use their fallback (a local bucket, no shared
  cache) without trying Redis at all;
* after a backoff (doubling up to a cap), one caller probes Redis with its own operation while
  the others keep using the fallback; if the probe succeeds the link is up again, which is
  logged once, and every backend returns to Redis, first handing over what it did alone.

Keys are ``<prefix>:<part>:...``; `scope_digest` turns a request partition (whose credentials,
never the secret itself) into a short hash, so a Redis shared by several tenants keeps their
state apart without storing who they are.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from middleware.structured_log import structured

if TYPE_CHECKING:
    from redis import Redis
    from redis.exceptions import RedisError

T = TypeVar("T")

INSTALL_HINT = "the Redis backends need the 'redis' package: pip install redis"


class RedisLink:
    """One Redis connection pool (thread-safe) and the up/down state of the link to it.

    ``url`` is a redis-py URL (``redis://[[user]:password@]host:port/db``, ``rediss://``,
    ``unix://``). ``timeout`` bounds each connect and each reply, in seconds. After a failure
    Redis is tried again ``backoff`` seconds later, then twice as late each time it still
    fails, up to ``max_backoff``. Warnings go to ``logger`` (any structlog logger), by default
    the stdlib logger ``logger_name``.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "middleware",
        timeout: float = 0.5,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        logger: Any = None,
        logger_name: str = "middleware",
    ) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"the Redis key prefix must be a non-empty word, got {prefix!r}")
        if not 0 < timeout < math.inf or not 0 < backoff <= max_backoff < math.inf:
            raise ValueError("timeout, backoff and max_backoff must be positive seconds, "
                             "with backoff <= max_backoff")
        try:
            from redis import Redis  # noqa: PLC0415 (an optional dependency)
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.exceptions import RedisError  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ModuleNotFoundError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self.prefix = prefix
        self.address = redacted(url)
        self.redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        if self.redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis backends store bytes: drop decode_responses from the URL")
        self._redis_errors: tuple[type[RedisError], ...] = (RedisError,)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.logger = structured(logger, logger_name)
        self._lock = threading.Lock()
        self._retry_at: float | None = None
        self._failures = 0

    @property
    def up(self) -> bool:
        """Whether the last word from Redis was a success (or nothing was tried yet)."""
        return self._retry_at is None

    def key(self, *parts: str) -> str:
        """The Redis key ``<prefix>:<part>:<part>...``."""
        return ":".join((self.prefix, *parts))

    def close(self) -> None:
        """Close the pooled Redis connections; they reopen on the next use."""
        self.redis.connection_pool.disconnect()

    def run(self, operation: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``operation()`` against Redis, or ``fallback()`` if Redis fails or is known down.

        Only Redis errors switch to the fallback; anything else ``operation`` raises (a
        quota refusal, say) propagates.
        """
        probe = False
        if self._retry_at is not None:
            if not self._claim_probe():
                return fallback()
            probe = True
        try:
            result = operation()
        except self._redis_errors as exc:
            self._failed(exc, probe)
            return fallback()
        except BaseException:
            if probe:
                self._restored()  # Redis answered; the operation refused (a spent quota)
            raise
        if probe:
            self._restored()
        return result

    def _claim_probe(self) -> bool:
        """Whether this caller may try Redis now; the others wait for its verdict."""
        with self._lock:
            now = time.monotonic()
            if self._retry_at is None or now < self._retry_at:
                return self._retry_at is None
            self._retry_at = now + self._delay()
            return True

    def _failed(self, error: Exception, probe: bool) -> None:
        with self._lock:
            if self._retry_at is None:
                self._failures = 1
            elif probe:
                self._failures += 1
            else:
                return  # an operation that started before the outage was noticed
            delay = self._delay()
            self._retry_at = time.monotonic() + delay
            first = self._failures == 1
        if first:
            self.logger.warning(
                "redis.unavailable",
                redis=self.address,
                error=f"{type(error).__name__}: {error}"[:300],
                retry_in=round(delay, 3),
            )

    def _restored(self) -> None:
        with self._lock:
            if self._retry_at is None:
                return
            self._retry_at = None
            failures, self._failures = self._failures, 0
        self.logger.info("redis.restored", redis=self.address, failed_attempts=failures)

    def _delay(self) -> float:
        return min(self.max_backoff, self.backoff * 2.0 ** max(0, self._failures - 1))

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<RedisLink {self.address} prefix={self.prefix!r} {state}>"


def redacted(url: str) -> str:
    """``url`` without its credentials or query: what may appear in logs and reprs."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid Redis URL>"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{parts.path}"


@lru_cache(maxsize=256)
def scope_digest(partition: Hashable) -> str:
    """A short, stable hash of a request partition (e.g. ``(identifier, tier)``).

    Stable across processes and machines (it hashes the ``repr`` of strings, numbers, None
    and tuples of them), so everyone using the same credentials meets in the same keys.
    """
    return hashlib.sha256(repr(partition).encode("utf-8")).hexdigest()[:24]
