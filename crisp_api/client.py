"""`Crisp`: the client. Holds the configuration and the pipeline; resources call through it."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import urllib3

from crisp_api import defaults, options
from crisp_api.caller import Answer, Body, Query
from crisp_api.config import ClientConfig
from crisp_api.envelope import decode
from crisp_api.errors import MissingCredentialsError, RouteError
from crisp_api.errors.translation import translated
from crisp_api.events import EventStream
from crisp_api.redaction import redact_url
from crisp_api.resources import (
    BucketResource,
    MediaResource,
    PlanResource,
    PluginResource,
    PluginShortcuts,
    WebsiteResource,
)
from crisp_api.routing import Route, encode_query, matcher
from crisp_api.stack import Stack, StackOptions, default_stack, retry_policy
from middleware import (
    DIRECT,
    BasicAuth,
    Middleware,
    Pipeline,
    PipelineError,
    Proxies,
    Request,
    Response,
    Urllib3Transport,
    structured,
)

Timeout = float | tuple[float, float]
"""The ``timeout`` option: seconds to connect and again for each read, or ``(connect, read)``."""

_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class Crisp(PluginShortcuts):
    """A Crisp REST API v1 client; thread-safe, reusable, one connection pool per client.

    ``Crisp()`` then ``authenticate(identifier, key)`` is all the original library needed,
    and still is; ``Crisp(identifier=..., key=..., tier=..., rest_host=...)`` does the same
    in one step, and `from_env` reads them from ``CRISP_*`` variables. Keyword options
    tune the pipeline: ``timeout`` (seconds allowed to connect, and again for each read of
    the answer; or a ``(connect, read)`` pair of seconds), ``deadline``
    (seconds a whole call may take, every attempt, wait and pause included; by default
    ``(max_retries + 1) * timeout`` (the longer of a pair) plus the backoff; every call also
    takes ``deadline=``), ``max_retries``, ``rate_limit`` (``"adaptive"``, the default, or
    ``None``: a rate learnt from Crisp's 429/420 answers, per credential, which finds and
    follows limits Crisp does not publish; a number: a fixed rate of our own in requests/s,
    pausing on 429/420), ``burst``, ``rate_limit_wait`` (the longest a call waits for its
    turn, in seconds, before failing with `RateLimitedError`; ``0`` fails fast, ``None``
    waits as long as it takes),
    ``cache_ttl`` (seconds, ``0`` = no cache), ``cache_size``, ``pool_size``,
    ``middleware`` (a whole custom stack, outermost first; the client's ``auth`` layer is
    added innermost unless the stack has a `BasicAuth` of its own) and ``logger`` (a
    structlog logger or a `logging.Logger`; by default structlog's once the application
    configures structlog, else the stdlib logger ``crisp_api``, silent until configured).

    ``redis_url`` (default: the ``CRISP_REDIS_URL`` environment variable; ``""`` for none)
    puts the rate-limit bucket, the 429/420 pause and the response cache in Redis, shared by
    every process and machine using the same Redis, ``redis_prefix`` and credentials (keys
    are named after a hash of the token identifier and tier, never the key). If Redis fails,
    calls go on with a local bucket and no shared cache, and Redis is used again once it is
    back. ``daily_quota`` caps the requests sent per UTC day (plugin tokens have such a
    quota), less ``quota_reserve`` (a share, 10% by default, kept for live work and the
    token's other users), counted for the whole fleet when shared: the requests left are
    spread over the rest of the day (``quota_pace=False``: spent as fast as the rate allows,
    for a batch run), and once none is left calls fail with
    `QuotaExceededError` unsent. Unknown (None) is the default: a plugin's quota is
    configurable. Known or not, refusals that persist at a crawl with nothing getting
    through show Crisp's quota spent (`middleware.spent`): calls then fail fast with
    `QuotaSpentError` unsent until its expected reset, ``quota_reset`` seconds after UTC
    midnight (0 by default; Crisp does not document it), when one probe request tells
    whether it did; ``quota_spent_after`` is how long such refusals must last (30 s; the
    probes' spacing scales with it).

    ``proxy`` routes the calls through an HTTP proxy: None (the default) takes it from the
    environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``, as `urllib.request` reads
    them, once, when the client is built), a URL (``http://[user:password@]host:port``) sends
    every call through that proxy whatever the environment says, and ``False`` uses none.
    https goes through a ``CONNECT`` tunnel; an unreachable or refusing proxy raises
    `ProxyError`. ``ca_bundle`` (the path of a PEM file) replaces the system's certificate
    authorities for https; certificates are always verified.

    `events` opens Crisp's real-time events for the same token (`crisp_api.events`, the
    ``events`` extra).
    """

    def __init__(
        self,
        *,
        identifier: str | None = None,
        key: str | None = None,
        tier: str | None = None,
        rest_host: str | None = None,
        timeout: Timeout = defaults.TIMEOUT,
        max_retries: int = defaults.MAX_RETRIES,
        rate_limit: float | str | None = defaults.RATE_LIMIT,
        burst: int = defaults.BURST,
        rate_limit_wait: float | None = defaults.RATE_LIMIT_WAIT,
        cache_ttl: float = defaults.CACHE_TTL,
        cache_size: int = defaults.CACHE_SIZE,
        pool_size: int = defaults.POOL_SIZE,
        max_body: int = defaults.MAX_BODY,
        middleware: Iterable[Middleware] | None = None,
        logger: Any = None,
        redis_url: str | None = None,
        redis_prefix: str = defaults.REDIS_PREFIX,
        daily_quota: int | None = defaults.DAILY_QUOTA,
        quota_reserve: float = defaults.QUOTA_RESERVE,
        quota_reset: float = defaults.QUOTA_RESET,
        quota_pace: bool = defaults.QUOTA_PACE,
        quota_spent_after: float = defaults.QUOTA_SPENT_AFTER,
        deadline: float | None = defaults.DEADLINE,
        proxy: str | Literal[False] | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
    ) -> None:
        options.check(
            timeout=timeout, max_retries=max_retries, rate_limit=rate_limit, burst=burst,
            rate_limit_wait=rate_limit_wait, cache_ttl=cache_ttl, cache_size=cache_size,
            pool_size=pool_size, max_body=max_body, redis_url=redis_url,
            redis_prefix=redis_prefix, daily_quota=daily_quota, quota_reserve=quota_reserve,
            quota_reset=quota_reset, quota_pace=quota_pace,
            quota_spent_after=quota_spent_after, deadline=deadline, proxy=proxy,
            ca_bundle=ca_bundle,
        )
        self._lock = threading.Lock()  # serialises the setters' read-modify-write of _config
        origin, prefix = _split_host(defaults.REST_HOST)
        self._config = ClientConfig(origin, prefix, defaults.REST_BASE_PATH, defaults.TIER)
        self._logger = logger = structured(logger, defaults.LOGGER_NAME)
        self._timeout = timeout
        self._transport = Urllib3Transport(
            timeout=_timeout(timeout),
            pool_size=pool_size,
            max_body=max_body,
            proxies=(
                Proxies.from_environment() if proxy is None
                else DIRECT if proxy is False
                else Proxies.fixed(proxy)
            ),
            ca_certs=None if ca_bundle is None else os.fspath(ca_bundle),
        )
        self._deadline = (
            deadline
            if deadline is not None
            else (max_retries + 1) * max(_pair(timeout))
            + retry_policy(max_retries, False).worst_backoff()
        )
        self.auth = BasicAuth(
            headers={
                "User-Agent": defaults.USER_AGENT,
                "Accept": "application/json",
                defaults.TIER_HEADER: self._config.tier,
            }
        )
        built = (
            Stack(tuple(_with_auth(list(middleware), self.auth)), None)
            if middleware is not None
            else default_stack(
                StackOptions(
                    max_retries=max_retries,
                    rate_limit=rate_limit,
                    burst=burst,
                    rate_limit_wait=rate_limit_wait,
                    cache_ttl=cache_ttl,
                    cache_size=cache_size,
                    logger=logger,
                    redis_url=(
                        os.environ.get(defaults.REDIS_URL_ENV) if redis_url is None else redis_url
                    ),
                    redis_prefix=redis_prefix,
                    daily_quota=daily_quota,
                    quota_reserve=quota_reserve,
                    quota_reset=quota_reset,
                    quota_pace=quota_pace,
                    quota_spent_after=quota_spent_after,
                ),
                auth=self.auth,
                scope=lambda: self._config.partition,
            )
        )
        self._redis_link = built.redis_link
        self._pipeline = Pipeline(built.layers, self._transport)

        self._website = WebsiteResource(self)
        self._plugin = PluginResource(self)
        self._plan = PlanResource(self)
        self._media = MediaResource(self)
        self._bucket = BucketResource(self)
        if (identifier is None) != (key is None):
            raise ValueError("identifier and key are given together (a token keypair), "
                             f"got only {'identifier' if key is None else 'key'}")
        if identifier is not None and key is not None:
            self.authenticate(identifier, key)
        if tier is not None:
            self.set_tier(tier)
        if rest_host is not None:
            self.set_rest_host(rest_host)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Crisp:
        """A client configured from the environment: the token keypair from
        ``CRISP_IDENTIFIER`` and ``CRISP_KEY`` (both or neither), the tier from ``CRISP_TIER``
        and the API host from ``CRISP_REST_HOST`` when set; ``options`` are the constructor's
        (and win over the environment). ``environ`` defaults to `os.environ`."""
        environ = os.environ if environ is None else environ
        from_environment = {
            name: environ[variable]
            for name, variable in (("identifier", "CRISP_IDENTIFIER"), ("key", "CRISP_KEY"),
                                   ("tier", "CRISP_TIER"), ("rest_host", "CRISP_REST_HOST"))
            if environ.get(variable)
        }
        if ("identifier" in from_environment) != ("key" in from_environment):
            missing = "CRISP_KEY" if "identifier" in from_environment else "CRISP_IDENTIFIER"
            raise ValueError(f"CRISP_IDENTIFIER and CRISP_KEY are set together; {missing} is "
                             "missing or empty")
        return cls(**{**from_environment, **options})

    # The routes, by resource (as in Crisp's reference) ---------------------------------

    @property
    def website(self) -> WebsiteResource:
        """Website routes: conversations, messages, people, operators, visitors, settings,
        campaigns, helpdesk..."""
        return self._website

    @property
    def plugin(self) -> PluginResource:
        """Plugin routes: connected websites, subscriptions, settings, endpoints."""
        return self._plugin

    @property
    def plan(self) -> PlanResource:
        """Plan routes: the plans and their subscription."""
        return self._plan

    @property
    def media(self) -> MediaResource:
        """Media routes: searching animated images."""
        return self._media

    @property
    def bucket(self) -> BucketResource:
        """Bucket routes: generating upload URLs."""
        return self._bucket

    # Configuration (the seed API) ------------------------------------------------------

    def authenticate(self, identifier: str, key: str) -> None:
        """Use the token keypair ``identifier``/``key`` for every following request."""
        with self._lock:
            for layer in self._auth_layers():
                layer.set_credentials(identifier, key)
            self._config = replace(self._config, identifier=identifier, key=key)

    def authenticate_tier(self, tier: str, identifier: str, key: str) -> None:
        """`set_tier` and `authenticate` in one step (as Crisp's Node.js client names it)."""
        self.set_tier(tier)
        self.authenticate(identifier, key)

    def set_tier(self, tier: str) -> None:
        """Authenticate as ``user`` (default), ``website`` or ``plugin``: a token is valid on
        its own tier only (a 401 names the tier a request was sent as)."""
        if tier not in defaults.TIERS:
            raise ValueError(f"tier must be one of {sorted(defaults.TIERS)}, got {tier!r}")
        with self._lock:
            for layer in self._auth_layers():
                layer.set_header(defaults.TIER_HEADER, tier)
            self._config = replace(self._config, tier=tier)

    def set_rest_host(self, rest_host: str) -> None:
        """Talk to ``rest_host`` (``scheme://host[:port][/prefix]``) instead of Crisp's API.

        A host given with the API's base path (``https://api.crisp.chat/v1``) means the same
        as without it: the base path is not added twice."""
        origin, prefix = _split_host(rest_host)
        with self._lock:
            base_path = self._config.base_path
            if base_path and prefix.endswith(base_path):
                prefix = prefix[: -len(base_path)]
            self._config = replace(self._config, origin=origin, prefix=prefix)

    def set_rest_base_path(self, rest_base_path: str) -> None:
        """Use another API base path than ``/v1``."""
        if not isinstance(rest_base_path, str) or "?" in rest_base_path or "#" in rest_base_path:
            raise ValueError(f"rest_base_path must be a URL path, got {rest_base_path!r}")
        path = "/" + rest_base_path.strip("/") if rest_base_path.strip("/") else ""
        with self._lock:
            self._config = replace(self._config, base_path=path)

    def set_timeout(self, timeout: Timeout) -> None:
        """Seconds allowed to connect, and again for each read of the answer; or a
        ``(connect, read)`` pair of seconds. (The deadline derived at construction stays.)"""
        options.check(timeout=timeout)
        self._transport.timeout = _timeout(timeout)
        self._timeout = timeout

    def get_rest_host(self) -> str:
        """The REST host in use."""
        config = self._config
        return config.origin + config.prefix

    def get_rest_base_path(self) -> str:
        """The API base path in use."""
        return self._config.base_path

    def get_timeout(self) -> Timeout:
        """The timeout in use, in seconds, as it was given (a number or a pair)."""
        return self._timeout

    def get_tier(self) -> str:
        """The tier in use."""
        return self._config.tier

    @property
    def config(self) -> ClientConfig:
        """Where and as whom the client calls now, as one frozen value (the setters swap in
        a new one); what `crisp_api.events` authenticates its socket with."""
        return self._config

    def _auth_layers(self) -> list[BasicAuth]:
        layers = [m for m in self._pipeline.stack if isinstance(m, BasicAuth)]
        return layers if self.auth in layers else [*layers, self.auth]

    # The middleware stack -------------------------------------------------------------

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The active middleware stack, outermost first."""
        return self._pipeline.stack

    def use(
        self, middleware: Middleware, *, before: str | None = None, after: str | None = None
    ) -> None:
        """Insert ``middleware`` before/after the layer of that name (default: innermost)."""
        self._pipeline.insert(middleware, before=before, after=after)

    def remove_middleware(self, name: str) -> Middleware:
        """Take the layer called ``name`` out of the stack and return it."""
        return self._pipeline.remove(name)

    def set_middleware(self, middleware: Iterable[Middleware]) -> None:
        """Replace the whole stack (outermost first); as with ``Crisp(middleware=...)``, the
        client's ``auth`` layer is added innermost unless the stack has a `BasicAuth`."""
        self._pipeline.replace(_with_auth(list(middleware), self.auth))

    # Calls ----------------------------------------------------------------------------

    def call(
        self,
        route: Route,
        params: tuple[Any, ...] = (),
        query: Query | None = None,
        body: Body = None,
        *,
        use_cache: bool = True,
        deadline: float | None = None,
    ) -> Any:
        """Call ``route`` with its path ``params``; returns the envelope's ``data``.

        ``deadline`` (seconds) bounds the whole call, every attempt, wait and pause included;
        None uses the client's.
        """
        config = self._config
        return decode(
            self._exchange(
                config, route, params, query, body, use_cache=use_cache, deadline=deadline
            ),
            route.method,
            route.template,
            config.tier,
        )

    def fetch(
        self,
        route: Route,
        params: tuple[Any, ...] = (),
        query: Query | None = None,
        body: Body = None,
        *,
        use_cache: bool = True,
        deadline: float | None = None,
    ) -> Answer:
        """`call`, keeping the answer's status and the server's clock next to its data.

        For callers that page (a 206 says more remains) or keep time in the server's clock
        rather than this machine's (a sync's watermark).
        """
        config = self._config
        response = self._exchange(
            config, route, params, query, body, use_cache=use_cache, deadline=deadline
        )
        data = decode(response, route.method, route.template, config.tier)
        return Answer(data, response.status, _server_time_ms(response.headers.get("date")))

    def _exchange(
        self,
        config: ClientConfig,
        route: Route,
        params: tuple[Any, ...],
        query: Query | None,
        body: Body,
        *,
        use_cache: bool,
        deadline: float | None,
    ) -> Response:
        path = config.root + route.expand(params)
        if query:
            encoded = encode_query(query)
            if encoded:
                path = f"{path}?{encoded}"
        return self._send(
            config,
            method=route.method,
            path=path,
            template=route.template,
            group=route.group(params),
            body=body,
            use_cache=use_cache,
            deadline=deadline,
        )

    def _send(
        self,
        config: ClientConfig,
        *,
        method: str,
        path: str,
        template: str,
        group: str | None,
        body: Body,
        use_cache: bool,
        deadline: float | None = None,
    ) -> Response:
        if deadline is not None:
            options.check(deadline=deadline)
        if config.identifier is None and not any(
            layer.has_credentials for layer in self._auth_layers()
        ):
            raise MissingCredentialsError(method=method, route=template)
        request = Request(
            method,
            config.origin,
            path,
            route=template,
            headers=None if body is None else dict(_JSON_HEADERS),
            body=None if body is None else _encode_body(body),
            partition=config.partition,
            group=group,
            use_cache=use_cache,
            deadline=time.monotonic() + (self._deadline if deadline is None else deadline),
        )
        try:
            response = self._pipeline(request)
        except PipelineError as exc:
            raise translated(exc, method, template) from exc
        return response

    def _raw(self, method: str, resource: str, query: Query | None, body: Body) -> Any:
        """A call by concrete path, as the original library's get/post/... made them."""
        if not isinstance(resource, str) or not resource.startswith("/"):
            raise ValueError(f"resource must be a path starting with '/', got {resource!r}")
        bare = resource.split("?", 1)[0]
        found = matcher().match(method, bare)
        template, group = bare, None
        if found is not None:
            route, values = found
            template = route.template
            if route.group_index is not None:
                group = values[route.group_index]
        config = self._config
        path = config.root + resource
        if query:
            encoded = encode_query(query)
            if encoded:
                path = f"{path}{'&' if '?' in path else '?'}{encoded}"
        response = self._send(
            config, method=method, path=path, template=template, group=group, body=body,
            use_cache=True,
        )
        return decode(response, method, template, config.tier)

    def get(self, resource: str, query: Query | None = None) -> Any:
        """GET ``resource`` (a path below the base path, e.g. ``/website/ID``)."""
        return self._raw("GET", resource, query, None)

    def head(self, resource: str) -> Any:
        """HEAD ``resource``; returns ``{}`` when it exists, raises `NotFoundError` otherwise."""
        return self._raw("HEAD", resource, None, None)

    def post(self, resource: str, data: Body = None) -> Any:
        """POST ``data`` (JSON) to ``resource``."""
        return self._raw("POST", resource, None, {} if data is None else data)

    def patch(self, resource: str, data: Body = None) -> Any:
        """PATCH ``resource`` with ``data`` (JSON)."""
        return self._raw("PATCH", resource, None, {} if data is None else data)

    def put(self, resource: str, data: Body = None) -> Any:
        """PUT ``data`` (JSON) at ``resource``."""
        return self._raw("PUT", resource, None, {} if data is None else data)

    def remove(self, resource: str) -> Any:
        """DELETE ``resource``."""
        return self._raw("DELETE", resource, None, None)

    delete = remove

    # Real-time events -----------------------------------------------------------------

    def events(
        self,
        names: Sequence[str],
        *,
        timeout: float = defaults.RTM_START_TIMEOUT,
        **options: Any,
    ) -> EventStream:
        """Crisp's real-time events ``names`` for this client's token: an `EventStream`
        (built with ``options``, and this client's logger), already connected and
        authenticated within ``timeout`` seconds. Needs the ``events`` extra."""
        options.setdefault("logger", self._logger)
        return EventStream(self, names, **options).start(timeout)

    # Lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections. The client stays usable; it reconnects on demand."""
        self._transport.close()
        if self._redis_link is not None:
            self._redis_link.close()

    def __enter__(self) -> Crisp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        config = self._config
        state = "authenticated" if config.identifier else "anonymous"
        return f"<Crisp {config.origin}{config.root} tier={config.tier} {state}>"


@functools.lru_cache(maxsize=1)
def _server_time_ms(date: str | None) -> int | None:
    """An HTTP ``Date`` header as epoch milliseconds; None when absent or malformed. The last
    header's value is kept: it changes once a second, and parsing it for every answer took
    about 2% of a sync's Python time."""
    if not date:
        return None
    try:
        return int(parsedate_to_datetime(date).timestamp() * 1000)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _with_auth(stack: list[Middleware], auth: BasicAuth) -> list[Middleware]:
    """A custom stack gets the client's auth layer innermost unless it has one of its own."""
    return stack if any(isinstance(m, BasicAuth) for m in stack) else [*stack, auth]


def _encode_body(body: Body) -> bytes:
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request body is not JSON-serialisable: {exc}") from None


def _pair(timeout: Timeout) -> tuple[float, float]:
    """``(connect, read)`` seconds of a ``timeout`` option."""
    return timeout if isinstance(timeout, tuple) else (timeout, timeout)


def _timeout(timeout: Timeout) -> urllib3.Timeout:
    connect, read = _pair(timeout)
    return urllib3.Timeout(connect=connect, read=read)


def _split_host(rest_host: str) -> tuple[str, str]:
    """``(origin, path prefix)`` of a REST host URL; a clear ValueError if it is not one,
    which never repeats credentials written in the URL."""
    if not isinstance(rest_host, str):
        raise ValueError(f"rest_host must be a URL string, got {type(rest_host).__name__}")
    shown = redact_url(rest_host)
    try:
        parts = urlsplit(rest_host.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"rest_host is not a valid URL: {shown!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"rest_host must be an http(s) URL with a host, got {shown!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"rest_host must not carry a query, fragment or credentials, got {shown!r}"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return origin, parts.path.rstrip("/")


__all__ = ["Answer", "Body", "Crisp", "Query", "RouteError"]
