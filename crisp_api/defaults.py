"""Every default of the client, in one place."""

from __future__ import annotations

from crisp_api import installation  # noqa: F401 (refuses a clash with the official crisp-api)
from crisp_api._version import __version__
from middleware.spent import SPENT_SECONDS

REST_HOST = "https://api.crisp.chat"
REST_BASE_PATH = "/v1"
TIERS = frozenset({"user", "website", "plugin"})
TIER = "user"
TIER_HEADER = "X-Crisp-Tier"
USER_AGENT = f"crisp-api-python/{__version__}"

TIMEOUT = 10.0
"""Seconds allowed to connect, and again to wait for each read of the answer."""

MAX_RETRIES = 4
BACKOFF_BASE = 0.25
BACKOFF_CAP = 20.0
MAX_RETRY_AFTER = 60.0
"""A Retry-After longer than this is not waited out: the call fails at once (RateLimitedError
for a 429/420, ServerError for a 5xx), with the wait asked for."""
DEADLINE: float | None = None
"""Seconds a whole call may take, every attempt, wait and pause included. None derives it from
the other settings: ``(max_retries + 1) * timeout`` plus the longest the backoff can wait in
all (53.75 s with the defaults). A wait the server asks for that would end past the deadline
is not waited for: the call fails at once, with the wait."""

RETRY_BUDGET_RATIO = 0.2
RETRY_BUDGET_FLOOR = 5.0
"""Retries per second always allowed, however few first attempts fund the budget."""

ADAPTIVE = "adaptive"
"""The ``rate_limit`` that learns Crisp's undisclosed limits (`middleware.adaptive`)."""
RATE_LIMIT: float | str | None = ADAPTIVE
"""Requests per second of our own, or ADAPTIVE (None means the same): a rate learnt from the
share of 429/420 answers, shared per credential."""
BURST = 10
RATE_LIMIT_WAIT: float | None = None
"""How long a call may wait for a rate-limit token; None waits, 0 fails fast."""

RATE_LIMIT_STATUSES = frozenset({420, 429})
"""Crisp answers 429 (too many requests) and 420 (quota / enhance your calm) when limiting."""

CACHE_TTL = 2.0
CACHE_SIZE = 1024
CACHE_BYTES = 8 * 1024 * 1024
"""The bytes of answer bodies the in-memory cache keeps at most, with at most CACHE_SIZE
answers: a page of messages is about 20 KB, and one answer may be up to MAX_BODY, so the
entry count alone does not bound the memory a long-running process gives the cache."""
POOL_SIZE = 32
MAX_BODY = 32 * 1024 * 1024
LOGGER_NAME = "crisp_api"

REDIS_URL_ENV = "CRISP_REDIS_URL"
"""The environment variable read for ``redis_url`` when the option is not given."""
REDIS_PREFIX = "crisp"
"""First part of every Redis key, so that one Redis can serve other applications too."""
REDIS_TIMEOUT = 0.5
"""Seconds allowed to connect to Redis and for each of its replies; past it, the client goes
on without Redis (local bucket, no shared cache) and tries it again after a backoff."""
REDIS_BACKOFF = 0.5
REDIS_MAX_BACKOFF = 5.0
"""Redis is tried again REDIS_BACKOFF seconds after it failed, then twice as late each time it
still fails, up to this."""
CACHE_HEADERS = frozenset({"content-type"})
"""The headers a cached answer needs to be decoded again: what a shared cache stores."""

DAILY_QUOTA: int | None = None
"""Requests allowed per UTC day (plugin tokens have such a quota); None counts nothing."""
QUOTA_BURST = 20
"""Requests that may go ahead of the daily quota's even schedule."""
QUOTA_PACE = True
"""Whether a known daily quota is spread over the rest of the day (a service that must last
the day) rather than spent as fast as the rate allows (a batch run, which stops at the
reserve and resumes the next day)."""
QUOTA_RESERVE = 0.10
"""Share of a known daily quota the client never spends: kept for live work and for the
token's other users (the customer's other tools)."""
QUOTA_RESET = 0.0
"""Seconds after UTC midnight at which Crisp's daily quota is expected to reset: the time a
`QuotaSpentError` gives. Crisp does not document it; quotas are counted per UTC day."""
QUOTA_SPENT_AFTER = SPENT_SECONDS
"""Seconds of refusals, with nothing answered between them, after which Crisp's daily quota
is taken as spent (`middleware.spent`; at least 8 refusals too)."""

RTM_CONNECT_TIMEOUT = 10.0
"""Seconds allowed to open the RTM socket, and again for Crisp to answer its authentication
(Crisp's own clients allow 10 s)."""
RTM_START_TIMEOUT = 30.0
"""Seconds `EventStream.start` waits for the first authenticated connection, retries
included."""
RTM_RECONNECT_DELAY = 1.0
RTM_RECONNECT_DELAY_MAX = 10.0
RTM_JITTER = 0.5
"""The socket is opened again RTM_RECONNECT_DELAY seconds after it failed or dropped, then
twice as late each time it still fails, up to RTM_RECONNECT_DELAY_MAX; each wait is spread by
up to RTM_JITTER of itself either way, so that a fleet does not reconnect all at once."""
RTM_REDISCOVER_AFTER = 3
"""Failed connections in a row after which the RTM endpoint is asked for again (Crisp may move
a client to another RTM server)."""
RTM_QUEUE_SIZE = 10_000
"""Events an `EventStream` keeps for its reader."""
RTM_OVERFLOW_WAIT = 1.0
"""Seconds the socket's reader waits for room in a full event queue before dropping the
event."""
