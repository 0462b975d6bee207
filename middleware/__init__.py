"""A generic HTTP middleware pipeline on urllib3; knows nothing of any particular API.

A request goes through a stack of middlewares, outermost first, composed once into a single
callable, and ends in a urllib3 transport. Built-in layers: structured logging, response
cache, retry with backoff and a budget, token-bucket rate limiting (a fixed rate, or one learnt
from the server's throttling) with an optional request quota and the detection of a quota the
server shows spent, authentication, and OpenTelemetry spans named after route templates (with
``opentelemetry-api``). The bucket
and the cache can live in Redis, shared by a fleet.
"""

from middleware.adaptive import AdaptiveBucket, AdaptiveRate, AdaptiveSettings
from middleware.attempts import AttemptListener, Decision, Outcome, listen
from middleware.auth import BasicAuth
from middleware.budget import RetryBudget
from middleware.cache import CacheBackend, InMemoryCache, ResponseCache
from middleware.contract import Handler, Middleware
from middleware.errors import (
    BodyTooLargeError,
    ConnectError,
    ConnectionDroppedError,
    DeadlineExceededError,
    PipelineError,
    ProxyConnectError,
    RateLimitWaitError,
    ReadTimeoutError,
    TLSError,
    TransportError,
)
from middleware.message import (
    NOT_DECODED,
    NOTE_ATTEMPT,
    NOTE_ATTEMPT_LISTENERS,
    NOTE_CACHE,
    NOTE_RATE_LIMIT_WAIT,
    Request,
    Response,
)
from middleware.pipeline import Pipeline, compose
from middleware.proxy import DIRECT, Proxies, Proxy
from middleware.quota import DailyQuota, QuotaBucket, QuotaExhaustedError
from middleware.ratelimit import BucketBackend, InMemoryBucket, RateLimit
from middleware.redis_bucket import RedisBucket
from middleware.redis_cache import RedisCache
from middleware.redis_link import RedisLink
from middleware.retry import Retry, RetryPolicy
from middleware.retry_after import retry_after_seconds
from middleware.spent import ServerQuotaSpentError, SpentQuotaWatch, SpentRule, next_utc_midnight
from middleware.structured_log import StructuredLogging, structured
from middleware.tracing import Tracing
from middleware.transport import Urllib3Transport

__all__ = [
    "DIRECT",
    "NOTE_ATTEMPT",
    "NOTE_ATTEMPT_LISTENERS",
    "NOTE_CACHE",
    "NOTE_RATE_LIMIT_WAIT",
    "NOT_DECODED",
    "AdaptiveBucket",
    "AdaptiveRate",
    "AdaptiveSettings",
    "AttemptListener",
    "BasicAuth",
    "BodyTooLargeError",
    "BucketBackend",
    "CacheBackend",
    "ConnectError",
    "ConnectionDroppedError",
    "DailyQuota",
    "DeadlineExceededError",
    "Decision",
    "Handler",
    "InMemoryBucket",
    "InMemoryCache",
    "Middleware",
    "Outcome",
    "Pipeline",
    "PipelineError",
    "Proxies",
    "Proxy",
    "ProxyConnectError",
    "QuotaBucket",
    "QuotaExhaustedError",
    "RateLimit",
    "RateLimitWaitError",
    "ReadTimeoutError",
    "RedisBucket",
    "RedisCache",
    "RedisLink",
    "Request",
    "Response",
    "ResponseCache",
    "Retry",
    "RetryBudget",
    "RetryPolicy",
    "ServerQuotaSpentError",
    "SpentQuotaWatch",
    "SpentRule",
    "StructuredLogging",
    "TLSError",
    "Tracing",
    "TransportError",
    "Urllib3Transport",
    "compose",
    "listen",
    "next_utc_midnight",
    "retry_after_seconds",
    "structured",
]
