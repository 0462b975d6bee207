"""The ``/v1`` pipeline: faults, authentication, rate limiting, routing, handlers and Crisp's
envelope.

Order of checks, as a client meets them: injected faults (they stand for the network and load
balancers, so they come first); unknown route (404 ``route_not_found``); credentials and tier
(401 ``unauthorized``: like Crisp's, the fake's tokens belong to one tier, its ``tier``, and a
request naming another in ``X-Crisp-Tier`` is refused); the token bucket (429); wrong method
(405 ``method_not_allowed``); plugin-only routes (``/plugin/connect/...`` need tier
``plugin``: 403 ``not_allowed``, for a fake whose tokens are of another tier); then the
handler, under the state lock.

What a wrong address answers, always in Crisp's envelope:

- a path outside the API's base, or under a wrong one (``/website/...``, ``/v2/...``,
  ``/v1/v1/website/...``), or not in the catalogue: 404 ``route_not_found``, before any
  credentials are looked at;
- a catalogue path naming a website, conversation, profile or message the fake does not
  know (``GET /v1/website/{unknown}/conversations/1``): 404 ``not_found``, once
  authenticated.

Successes answer 200, except a page of messages with older ones left: 206 (see
`crisp_api.testing.handlers.messages`).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from crisp_api.testing.context import Context, Raw
from crisp_api.testing.data import encode
from crisp_api.testing.errors import ApiError
from crisp_api.testing.faults import Decision, FaultInjector, Faults, Outcome
from crisp_api.testing.handlers import dispatch
from crisp_api.testing.http11 import Request, Response
from crisp_api.testing.routes import Match, Router, WrongMethod, load_routes
from crisp_api.testing.stats import Stats
from crisp_api.testing.world import World

TIERS = frozenset({"user", "website", "plugin"})
PLUGIN_ONLY_PREFIX = "/plugin/connect/"
API_PREFIX = "/v1"

_OK = b'{"error":false,"reason":"resolved","data":'
_SERVER_ERROR_REASONS = {500: "internal_error", 502: "bad_gateway", 503: "service_unavailable",
                         504: "gateway_timeout"}
_PHRASES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily "
            "Unavailable", 504: "Gateway Time-out"}
_HTML_PAGE = ("<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
              "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n")

logger = logging.getLogger(__name__)


def failure(status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A Crisp error envelope."""
    body = b'{"error":true,"reason":"%s","data":{}}' % reason.encode()
    return Response(status, body, headers=headers)


def success(data: object) -> Response:
    """A Crisp success envelope around ``data`` (JSON-ready, or `Raw` with its status)."""
    if isinstance(data, Raw):
        return Response(data.status, _OK + data.json + b"}")
    return Response(200, _OK + encode(data) + b"}")


def server_error(status: int, html: bool) -> Response:
    """A 5xx as Crisp's API sends it, or as an HTML page from the load balancer in front."""
    if html:
        page = _HTML_PAGE.format(status=status, phrase=_PHRASES.get(status, "Server Error"))
        return Response(status, page.encode(), content_type="text/html")
    return failure(status, _SERVER_ERROR_REASONS.get(status, "internal_error"))


def throttled(status: int, retry_after: int) -> Response:
    """A 429/420 with ``Retry-After`` in seconds."""
    return failure(status, "rate_limited", (("Retry-After", str(retry_after)),))


def basic_authorization(identifier: str, key: str) -> str:
    """The ``Authorization`` header value for a token."""
    return "Basic " + base64.b64encode(f"{identifier}:{key}".encode()).decode()


@dataclass(frozen=True, slots=True)
class _Call:
    api: Api
    request: Request
    decision: Decision
    match: Match | WrongMethod | None
    injector: FaultInjector

    def respond(self) -> Response:
        return self.api.answer(self)


class Api:
    """Admits and answers ``/v1`` requests for the tokens in ``credentials``
    (identifier to key), all of tier ``tier``."""

    def __init__(self, world: World, stats: Stats, credentials: Mapping[str, str],
                 faults: Faults, tier: str) -> None:
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {sorted(TIERS)}, got {tier!r}")
        self.world = world
        self.stats = stats
        self.tier = tier
        self.router = Router(load_routes())
        self._credentials = dict(credentials)
        self._headers = {basic_authorization(identifier, key): identifier
                         for identifier, key in credentials.items()}
        self._injector = FaultInjector(faults)

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._injector.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults (fresh random generator, budget and token buckets); safe to call
        from any thread."""
        self._injector = FaultInjector(faults)

    def admit(self, request: Request) -> _Call:
        """Match the route, decide the faults, and record the request."""
        path = request.path
        match = None
        if path.startswith(API_PREFIX) and path[len(API_PREFIX):len(API_PREFIX) + 1] == "/":
            match = self.router.match(request.method, path[len(API_PREFIX):])
        route = match.route if isinstance(match, Match) else None
        injector = self._injector
        if route is None:
            decision = injector.decide(request.method, None, None)
        else:
            decision = injector.decide(request.method, route.name, route.template)
        outcome = decision.outcome
        self.stats.request(request.method, request.target, request.raw_headers, request.body,
                           template=None if route is None else route.template,
                           fault=None if outcome is Outcome.NORMAL else outcome.value)
        if decision.slow_chunk:
            self.stats.fault("slow_body")
        return _Call(self, request, decision, match, injector)

    def answer(self, call: _Call) -> Response:
        """Apply the request (unless a fault stops it) and build the answer."""
        try:
            response = self._answer(call)
        except Exception:
            logger.exception("fake Crisp failed on %s %s", call.request.method,
                             call.request.target)
            response = failure(500, "internal_error")
        self.stats.answered(response.status)
        if call.request.method == "HEAD":
            return Response(response.status, b"", response.content_type, response.headers)
        return response

    def _answer(self, call: _Call) -> Response:
        decision, request, match = call.decision, call.request, call.match
        if decision.outcome is Outcome.ERROR:
            return server_error(decision.status, decision.html)
        if decision.outcome is Outcome.THROTTLE:
            return throttled(decision.status, call.injector.faults.retry_after)
        if match is None:
            return failure(404, "route_not_found")
        identifier = self._authenticate(request.headers.get("authorization"))
        tier = request.headers.get("x-crisp-tier", "").lower()
        if identifier is None or tier != self.tier:
            return failure(401, "unauthorized")
        if not call.injector.spend_quota(identifier):
            self.stats.fault("quota")
            return failure(429, "rate_limited")
        wait = call.injector.take_token(identifier)
        if wait is not None:
            self.stats.fault("bucket")
            if not call.injector.faults.bucket_retry_after:
                return failure(429, "rate_limited")
            return throttled(429, wait)
        if isinstance(match, WrongMethod):
            return failure(405, "method_not_allowed", (("Allow", ", ".join(match.allowed)),))
        if match.route.template.startswith(PLUGIN_ONLY_PREFIX) and tier != "plugin":
            return failure(403, "not_allowed")
        context = Context(self.world, self.stats, match.route, match.params, request.query,
                          request.body)
        with self.world.lock:
            try:
                return success(dispatch(context))
            except ApiError as error:
                return failure(error.status, error.reason)

    def _authenticate(self, header: str | None) -> str | None:
        """The identifier of a valid Basic token, or None."""
        if header is None:
            return None
        identifier = self._headers.get(header)
        if identifier is not None:
            return identifier
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        identifier, _, key = decoded.partition(":")
        known = self._credentials.get(identifier)
        return identifier if known is not None and known == key else None
