"""The client's default middleware stack, built by one pure function from its options.

`default_stack` takes the options (`StackOptions`), the client's auth layer and the function
naming the current credential (the rate is learnt per credential), and returns the layers,
outermost first, with the Redis link they share, if any. It keeps no state of its own, so a
stack can be built, inspected and tested without a client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from crisp_api import defaults
from crisp_api.envelope import is_success
from crisp_api.extras import install_hint
from middleware import (
    AdaptiveBucket,
    BasicAuth,
    BucketBackend,
    CacheBackend,
    DailyQuota,
    InMemoryBucket,
    InMemoryCache,
    Middleware,
    QuotaBucket,
    RateLimit,
    RedisBucket,
    RedisCache,
    RedisLink,
    ResponseCache,
    Retry,
    RetryBudget,
    RetryPolicy,
    SpentRule,
    StructuredLogging,
    next_utc_midnight,
)


@dataclass(frozen=True, slots=True)
class StackOptions:
    """The options of `Crisp` that shape its default stack (checked by `crisp_api.options`)."""

    max_retries: int
    rate_limit: float | str | None
    burst: int
    rate_limit_wait: float | None
    cache_ttl: float
    cache_size: int
    logger: Any
    redis_url: str | None
    redis_prefix: str
    daily_quota: int | None
    quota_reserve: float
    quota_reset: float
    quota_pace: bool
    quota_spent_after: float


@dataclass(frozen=True, slots=True)
class Stack:
    """A built stack: its layers, outermost first, and the Redis link they share."""

    layers: tuple[Middleware, ...]
    redis_link: RedisLink | None


def default_stack(
    options: StackOptions, *, auth: BasicAuth, scope: Callable[[], Hashable]
) -> Stack:
    """Logging, cache (if ``cache_ttl``), retry, rate limit and ``auth``, in that order, their
    bucket and cache in Redis when ``redis_url`` is given; ``scope`` names the credential
    whose rate the adaptive bucket learns. The rate limit watches Crisp's refusals for a
    spent daily quota (`middleware.spent`), whatever the rate."""
    rate = bucket_rate(options.rate_limit)
    link = _redis_link(options)
    quota = (
        None
        if options.daily_quota is None
        else _daily_quota(options.daily_quota, options.quota_reserve, options.quota_reset,
                          pace=options.quota_pace)
    )
    bucket: BucketBackend
    if link is not None:
        bucket = RedisBucket(link, rate, options.burst, quota=quota, scope=scope)
    else:
        bucket = (
            InMemoryBucket(rate, options.burst)
            if isinstance(rate, float)
            else AdaptiveBucket(options.burst, scope=scope)
        )
        if quota is not None:
            bucket = QuotaBucket(bucket, quota)
    layers: list[Middleware] = [
        StructuredLogging(options.logger, logger_name=defaults.LOGGER_NAME),
    ]
    if options.cache_ttl > 0:
        cache: CacheBackend = (
            InMemoryCache(
                maxsize=options.cache_size, ttl=options.cache_ttl,
                max_bytes=defaults.CACHE_BYTES,
            )
            if link is None
            else RedisCache(link, ttl=options.cache_ttl, keep_headers=defaults.CACHE_HEADERS)
        )
        layers.append(ResponseCache(cache, storable=is_success))
    budget = RetryBudget(
        ratio=defaults.RETRY_BUDGET_RATIO, min_per_second=defaults.RETRY_BUDGET_FLOOR
    )
    throttled = defaults.RATE_LIMIT_STATUSES  # judged into each attempt's Outcome by retry
    layers += [
        Retry(retry_policy(options.max_retries, rate == defaults.ADAPTIVE, throttled), budget),
        RateLimit(
            bucket,
            max_wait=options.rate_limit_wait,
            pause_statuses=throttled,
            max_pause=defaults.MAX_RETRY_AFTER,
            spent=SpentRule.lasting(options.quota_spent_after,
                                    functools.partial(next_utc_midnight,
                                                      offset=options.quota_reset)),
        ),
        auth,
    ]
    return Stack(tuple(layers), link)


def _redis_link(options: StackOptions) -> RedisLink | None:
    if not options.redis_url:
        return None
    try:
        return RedisLink(
            options.redis_url,
            prefix=options.redis_prefix,
            timeout=defaults.REDIS_TIMEOUT,
            backoff=defaults.REDIS_BACKOFF,
            max_backoff=defaults.REDIS_MAX_BACKOFF,
            logger=options.logger,
            logger_name=defaults.LOGGER_NAME,
        )
    except ImportError as exc:
        raise ImportError(f"redis_url needs the redis extra: {install_hint('redis')}") from exc


def bucket_rate(rate_limit: float | str | None) -> float | str:
    """The bucket's rate (checked by `options`): requests/s, or `defaults.ADAPTIVE`."""
    if rate_limit is None or rate_limit == defaults.ADAPTIVE:
        return defaults.ADAPTIVE
    return float(rate_limit)


def retry_policy(
    max_retries: int, adaptive: bool, throttled: frozenset[int] = defaults.RATE_LIMIT_STATUSES
) -> RetryPolicy:
    """The client's retry rules, from its defaults; an adaptive bucket paces the retries of
    ``throttled`` answers."""
    return RetryPolicy(
        max_retries=max_retries,
        paced_by_limiter=adaptive,
        backoff_base=defaults.BACKOFF_BASE,
        backoff_cap=defaults.BACKOFF_CAP,
        max_retry_after=defaults.MAX_RETRY_AFTER,
        rate_limit_statuses=throttled,
    )


def _daily_quota(limit: int, reserve: float, reset: float, *, pace: bool) -> DailyQuota:
    """A known quota, whose days start ``reset`` seconds after UTC midnight: spread over the
    rest of the day (``pace``: a burst of `defaults.QUOTA_BURST` ahead of the even schedule),
    or all of it spendable at once."""
    unpaced = DailyQuota(limit, reserve=reserve)
    return DailyQuota(limit, burst=defaults.QUOTA_BURST if pace else unpaced.spendable,
                      reserve=reserve, offset=reset)
