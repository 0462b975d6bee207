"""Operating follow mode: Prometheus metrics, ``/healthz``, and the web hooks endpoint.

`Metrics` (``prometheus_client``, the ``metrics`` extra) counts what an operator graphs:
requests by status, retries, rate-limit answers, the adaptive rate, the daily quota left,
events applied by type, seconds since the last complete reconciliation, whether live events
flow, the service's state, sync runs by kind and outcome, events waiting for the store or
dropped, and the conversations events touched and the requests spent confirming them.
`serve` answers ``GET /metrics`` and ``GET /healthz`` (`healthz`) and, when given a hook
handler, ``POST`` web hooks; it is started before the first sync.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from crisp_api.defaults import RATE_LIMIT_STATUSES
from crisp_api.extras import install_hint
from crisp_api.sync.follow import FAILING, STATES, Health
from crisp_api.webhooks import WebhookError, parse
from middleware import (
    NOTE_ATTEMPT,
    AdaptiveBucket,
    Handler,
    QuotaBucket,
    RateLimit,
    Request,
    Response,
    TransportError,
)

if TYPE_CHECKING:
    from crisp_api.client import Crisp

INSTALL_HINT = f"--metrics-port needs prometheus_client: {install_hint('metrics')}"
MAX_HOOK_BODY = 1024 * 1024
"""The largest web hook body read; larger ones are refused unread (413)."""


class Metrics:
    """The follow mode's Prometheus metrics, in a registry of their own."""

    def __init__(self, client: Crisp, health: Health, threshold: float) -> None:
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
        self.layer = _CountingLayer(self)

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


def healthz(health: Health, threshold: float) -> tuple[int, bytes]:
    """``/healthz``: the status (503 once something has failed for longer than
    ``threshold`` seconds, else 200, degraded or not) and the JSON body: ``state`` (one of
    `crisp_api.sync.follow.STATES`), ``healthy`` and ``problems`` (what is wrong)."""
    state, problems = health.state(threshold)
    body = {"state": state, "healthy": state != FAILING, "problems": problems}
    return (503 if state == FAILING else 200), json.dumps(body).encode()


class _CountingLayer:
    """Counts every attempt that reaches the network (placed just before authentication)."""

    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, request: Request, call_next: Handler) -> Response:
        metrics = self._metrics
        if request.notes.get(NOTE_ATTEMPT, 1) > 1:
            metrics.retries.inc()
        try:
            response = call_next(request)
        except TransportError:
            metrics.requests.labels("error").inc()
            raise
        metrics.requests.labels(str(response.status)).inc()
        if response.status in RATE_LIMIT_STATUSES:
            metrics.rate_limited.inc()
        return response


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


def serve(
    host: str,
    port: int,
    *,
    health: Health,
    threshold: float,
    metrics: Metrics | None = None,
    hooks: tuple[str, HookHandler] | None = None,
) -> ThreadingHTTPServer:
    """Start answering on ``host:port`` in a daemon thread; ``shutdown()`` stops it.

    ``hooks`` is ``(secret, handler)`` to take Crisp's web hooks on ``POST``: a hook whose
    ``X-Crisp-Signature`` does not verify is refused (401) and never applied.
    """

    class Handler(BaseHTTPRequestHandler):
        server_version = "crisp-sync"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(*healthz(health, threshold), "application/json")
            elif path == "/metrics" and metrics is not None:
                text, content_type = metrics.render()
                self._answer(200, text, content_type)
            else:
                self._answer(404, b'{"error": "not_found"}', "application/json")

        def do_POST(self) -> None:
            if hooks is None:
                self._answer(404, b'{"error": "not_found"}', "application/json")
                return
            try:
                length = int(self.headers.get("Content-Length", "-1"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_HOOK_BODY:
                self._answer(413, b'{"error": "bad_length"}', "application/json")
                return
            raw = self.rfile.read(length)
            secret, handler = hooks
            try:
                event, data = parse(secret, raw, dict(self.headers.items()))
            except WebhookError as exc:
                self._answer(401, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            handler(event, data)
            self._answer(200, b'{"error": false}', "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # access logs would drown the events; structlog has what matters

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="crisp-sync-http", daemon=True).start()
    return server
