"""Operating follow mode: Prometheus metrics, ``/healthz``, and the web hooks endpoint.

`Metrics` (``prometheus_client``, the ``metrics`` extra) counts what an operator graphs:
requests by status, retries, rate-limit answers, the adaptive rate, the daily quota left,
events applied by type, seconds since the last complete reconciliation, whether live events
flow, the service's state, sync runs by kind and outcome, events waiting for the store or
dropped, and the conversations events touched and the requests spent confirming them.
`serve` answers ``GET /metrics`` and ``GET /healthz`` (`healthz`) and, when given a hook
handler, ``POST`` web hooks; it is started before the first sync, on
`crisp_api.sync.http_server` (bounded threads, timeouts and connections).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from crisp_api.extras import install_hint
from crisp_api.sync.health import FAILING, STATES, Health
from crisp_api.sync.http_server import Answer, HttpRequest, HttpServer, Limits
from crisp_api.webhooks import (
    MalformedWebhookError,
    ReplayedWebhookError,
    ReplayGuard,
    WebhookError,
    parse,
)
from middleware import (
    AdaptiveBucket,
    Handler,
    Outcome,
    QuotaBucket,
    RateLimit,
    Request,
    Response,
    listen,
)

if TYPE_CHECKING:
    from crisp_api.client import Crisp
    from crisp_api.sync.allowance import Figures
    from crisp_api.sync.engine import SyncReport

INSTALL_HINT = f"--metrics-port needs prometheus_client: {install_hint('metrics')}"


class Metrics:
    """The follow mode's Prometheus metrics, in a registry of their own."""

    def __init__(self, client: Crisp, health: Health, threshold: float, *,
                 ledger: Callable[[], Figures] | None = None) -> None:
        try:
            import prometheus_client as prom  # noqa: PLC0415 - an optional dependency
        except ModuleNotFoundError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        registry = self.registry
        self.requests = prom.Counter(
            "crisp_requests", "Requests sent to Crisp, by answer status ('error': none)",
            ["status"], registry=registry,
        )
        self.retries = prom.Counter("crisp_retries", "Attempts beyond the first of a call",
                                    registry=registry)
        self.rate_limited = prom.Counter(
            "crisp_rate_limited", "Answers 429 or 420 (throttled)", registry=registry
        )
        self.events = prom.Counter("crisp_events_applied", "Live events applied to the store",
                                   ["event"], registry=registry)
        self.event_seconds = prom.Histogram(
            "crisp_event_apply_seconds", "Seconds to apply one live event", registry=registry
        )
        prom.Gauge("crisp_adaptive_rate", "The learnt request rate (requests/s; NaN: none)",
                   registry=registry).set_function(lambda: _adaptive_rate(client))
        prom.Gauge("crisp_daily_quota_left", "Requests left of the daily quota (NaN: none)",
                   registry=registry).set_function(lambda: _quota_left(client))
        prom.Gauge("crisp_socket_connected", "1 while live events flow (the event socket "
                   "is up)", registry=registry).set_function(lambda: float(health.live_events))
        registry.register(_HealthCollector(health, threshold))
        prom.Gauge(
            "crisp_seconds_since_reconciliation",
            "Seconds since the last complete reconciliation (since start if none yet)",
            registry=registry,
        ).set_function(lambda: time.monotonic() - (health.last_reconciled or health.started))
        self.quarantined = prom.Gauge(
            "crisp_quarantined_rows",
            "Rows held in the quarantine table (their key cannot be stored), by website, as of "
            "its last sync",
            ["website_id"], registry=registry,
        )
        if ledger is not None:  # the quota ledger (`crisp_api.sync.allowance`)
            prom.Gauge("crisp_requests_today", "Requests sent under the token this quota day "
                       "(every run and worker sharing the database)", registry=registry
                       ).set_function(lambda: float(ledger().requests_today))
            prom.Gauge("crisp_daily_quota", "The daily quota told (--daily-quota; NaN: "
                       "unknown)", registry=registry).set_function(
                lambda: math.nan if (quota := ledger().daily_quota) is None else float(quota))
        self.layer = _CountingLayer(self)

    def count_quarantined(self, reports: Sequence[SyncReport]) -> None:
        """Show the quarantined rows each synced website holds (read by its sync, so the
        scrape never waits for the database)."""
        for report in reports:
            if report.quarantine_held is not None:
                self.quarantined.labels(report.website_id).set(report.quarantine_held)

    def event_applied(self, name: str, seconds: float) -> None:
        """Count one applied event and how long it took."""
        self.events.labels(name).inc()
        self.event_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST


class _HealthCollector:
    """The metrics read off `Health` when scraped."""

    def __init__(self, health: Health, threshold: float) -> None:
        self._health = health
        self._threshold = threshold

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415 - an optional dependency
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        health = self._health
        current, _ = health.state(self._threshold)
        state = GaugeMetricFamily("crisp_state", "1 for the service's current state",
                                  labels=["state"])
        for name in STATES:
            state.add_metric([name], float(name == current))
        yield state
        runs = CounterMetricFamily("crisp_sync_runs", "Sync runs ended, by kind (first, "
                                   "reconciliation) and outcome", labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(health.runs.items()):
            runs.add_metric([kind, outcome], count)
        yield runs
        yield GaugeMetricFamily("crisp_events_pending", "Live events waiting for the store",
                                value=health.events_pending)
        yield CounterMetricFamily("crisp_events_dropped", "Live events given up (their "
                                  "conversations read again in full)",
                                  value=health.events_dropped)
        yield GaugeMetricFamily("crisp_touched_conversations", "Conversations live events "
                                "touched, not yet confirmed through the REST API",
                                value=health.touched)
        yield CounterMetricFamily("crisp_recheck_requests", "Requests spent reading again "
                                  "the conversations live events touched",
                                  value=health.recheck_calls)
        spent = health.quota_spent_until
        yield GaugeMetricFamily("crisp_quota_spent_until", "When Crisp's daily quota is "
                                "expected to reset while it is spent (epoch s; 0: not spent)",
                                value=0.0 if spent is None else spent)
        yield GaugeMetricFamily("crisp_profiles_deferred", "People profile reads waiting for "
                                "the daily quota to reset", value=health.profiles_deferred)
        yield CounterMetricFamily("crisp_profiles_not_deferred", "People profile reads not "
                                  "queued while the quota was spent (the queue was full)",
                                  value=health.profiles_not_deferred)


def healthz(health: Health, threshold: float) -> tuple[int, bytes]:
    """``/healthz``: the status (503 once something has failed for longer than
    ``threshold`` seconds, else 200, degraded or not) and the JSON body: ``state`` (one of
    `crisp_api.sync.health.STATES`), ``healthy`` and ``problems`` (what is wrong)."""
    state, problems = health.state(threshold)
    body = {"state": state, "healthy": state != FAILING, "problems": problems}
    return (503 if state == FAILING else 200), json.dumps(body).encode()


class _CountingLayer:
    """Counts every attempt that reaches the network: placed outermost, it listens to each
    call's attempts (`middleware.attempts`) as the retry layer judged them."""

    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._listener = self._attempt_ended  # bound once, not per request

    def __call__(self, request: Request, call_next: Handler) -> Response:
        listen(request, self._listener)
        return call_next(request)

    def _attempt_ended(self, _request: Request, outcome: Outcome) -> None:
        metrics = self._metrics
        if outcome.number > 1:
            metrics.retries.inc()
        metrics.requests.labels("error" if outcome.error is not None
                                else str(outcome.status)).inc()
        if outcome.throttled:
            metrics.rate_limited.inc()


def _bucket(client: Crisp) -> Any:
    for layer in client.middleware:
        if isinstance(layer, RateLimit):
            return layer.backend
    return None


def _adaptive_rate(client: Crisp) -> float:
    bucket = _bucket(client)
    if isinstance(bucket, QuotaBucket):
        bucket = bucket.bucket
    if isinstance(bucket, AdaptiveBucket):
        rate = bucket.rate()
        return float("nan") if rate is None else rate
    return float("nan")


def _quota_left(client: Crisp) -> float:
    bucket = _bucket(client)
    return float(bucket.left()) if isinstance(bucket, QuotaBucket) else float("nan")


HookHandler = Callable[[str, Any], None]
"""Applies one verified web hook: its event name and data."""
_NOT_FOUND = Answer(404, b'{"error": "not_found"}')


def serve(
    host: str,
    port: int,
    *,
    health: Health,
    threshold: float,
    metrics: Metrics | None = None,
    hooks: tuple[str, HookHandler] | None = None,
    limits: Limits | None = None,
    logger: Any = None,
) -> HttpServer:
    """Start answering on ``host:port`` (0: a free port, see ``server_address``) in a daemon
    thread; ``shutdown()`` stops it. `HttpServer` bounds what clients may cost (``limits``).

    ``hooks`` is ``(secret, handler)`` to take Crisp's web hooks on ``POST``: a hook whose
    ``X-Crisp-Signature`` does not verify is refused (401), one that is not well-formed (400)
    or an exact replay (409), and none of them reaches the handler. A handler that raises
    gives 500. Other methods get 405.
    """
    replays = ReplayGuard() if hooks is not None else None
    log = logger if logger is not None else structlog.get_logger("crisp_sync")

    def answer(request: HttpRequest) -> Answer:
        if request.method == "GET":
            if request.path == "/healthz":
                return _healthz(health, threshold)
            if request.path == "/metrics" and metrics is not None:
                return _metrics(metrics)
            return _NOT_FOUND
        if request.method == "POST" and hooks is not None:
            return _hook(hooks, replays, request, log)
        allowed = "GET, POST" if hooks is not None else "GET"
        return Answer(405, b'{"error": "method_not_allowed"}', headers=(("Allow", allowed),))

    return HttpServer(host, port, answer, limits=limits, logger=log)


def _healthz(health: Health, threshold: float) -> Answer:
    """``GET /healthz``: see `healthz`."""
    return Answer(*healthz(health, threshold))


def _metrics(metrics: Metrics) -> Answer:
    """``GET /metrics``: the Prometheus exposition."""
    text, content_type = metrics.render()
    return Answer(200, text, content_type)


def _hook(hooks: tuple[str, HookHandler], replays: ReplayGuard | None,
          request: HttpRequest, logger: Any) -> Answer:
    """``POST`` a web hook: verified, well-formed and new, then handed to the handler."""
    secret, handler = hooks
    try:
        event, data = parse(secret, request.body, request.headers, replays=replays)
    except WebhookError as exc:
        status = _HOOK_REFUSALS.get(type(exc), 401)
        logger.info("hook.refused", status=status, reason=str(exc))
        return Answer(status, json.dumps({"error": str(exc)}).encode())
    handler(event, data)
    return Answer(200, b'{"error": false}')


_HOOK_REFUSALS: dict[type[WebhookError], int] = {
    MalformedWebhookError: 400,
    ReplayedWebhookError: 409,
}
"""The status of each refused hook, by its error (any other `WebhookError`: 401)."""
