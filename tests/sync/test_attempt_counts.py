"""The request counter, the Prometheus metrics and the quota ledger count attempts as the retry
layer judged them (attempt listeners), through a default client answered without a socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from crisp_api import Crisp
from crisp_api.sync import RequestCounter, SQLiteStore, install
from crisp_api.sync.allowance import Allowance
from middleware import Handler, Request, Response
from tests.conftest import IDENTIFIER, KEY


class Scripted:
    """Innermost layer: answers from a script (then 200), sending nothing."""

    name = "scripted"

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)

    def __call__(self, request: Request, call_next: Handler) -> Response:
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Content-Type": "application/json"}
        if status != 200:
            headers["Retry-After"] = "0"
        body = b'{"error": false, "reason": "resolved", "data": {}}' if status == 200 else b"{}"
        return Response(status, headers, body)


def test_each_attempt_is_counted_once_by_every_listener(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    from crisp_api.sync.follow import Health  # noqa: PLC0415
    from crisp_api.sync.monitoring import Metrics  # noqa: PLC0415

    with Crisp(rate_limit=1000) as client, SQLiteStore(tmp_path / "db.sqlite3") as store:
        client.set_rest_host("http://crisp.invalid")
        client.authenticate(IDENTIFIER, KEY)
        client.use(Scripted(503, 420, 200))
        counter = RequestCounter()
        install(counter, client)
        metrics = Metrics(client, Health(), 60.0)
        client.use(metrics.layer, before=client.middleware[0].name)
        allowance = Allowance(store, client, IDENTIFIER, daily_quota=None, quota_reset=0.0)
        allowance.open()

        client.website.get_website("w1")  # 503, 420, then 200
        client.website.get_website("w1")  # a cache hit: no attempt

        counts = counter.snapshot()
        text = metrics.render()[0].decode()
        assert (counts.calls, counts.cache_hits, counts.requests) == (2, 1, 3)
        assert (counts.retries, counts.rate_limited) == (2, 1)
        for line in ('crisp_requests_total{status="503"} 1.0',
                     'crisp_requests_total{status="420"} 1.0',
                     'crisp_requests_total{status="200"} 1.0',
                     "crisp_retries_total 2.0", "crisp_rate_limited_total 1.0"):
            assert line in text
        assert allowance.ledger.sent == 3
