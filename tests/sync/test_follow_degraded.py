"""Follow mode degrades instead of dying: ``crisp-sync --follow`` in a child process, against
the fake Crisp with its RTM taken away (discovery answering 404, the socket's port closed,
the quota spent) and brought back, a slow first sync, and a real Redis killed and started
again under it. The copy is compared with the fake's truth."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from crisp_api.sync.follow import NOT_CONNECTED_YET
from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import assert_exact_copy, sync_command, wait_for
from tests.sync.test_follow import free_port, get, message_content

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["crisp_api.testing.pytest_plugin", "tests.redis_server"]


@contextmanager
def serving(fake: FakeCrisp, db: Path | str, *extra: str, env: dict[str, str] | None = None
            ) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``crisp-sync --follow -v`` against ``fake``, once its metrics port answers (which it
    does from start-up); killed if still running when the block ends."""
    port = free_port()
    command, base = sync_command(
        fake, Path(db), "--website-id", fake.website_id, "--follow", "--metrics-port",
        str(port), "--bind", "127.0.0.1", "-v", *extra,
    )
    if str(db).startswith("postgresql://"):
        command[command.index("--db") + 1] = str(db)
    child = subprocess.Popen(command, env={**base, **(env or {})}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] or child.poll() is not None,
                 30, "the health port to open")
        assert child.poll() is None, child.communicate()
        yield child, port
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def health(port: int) -> tuple[int, str, list[str]]:
    """``/healthz``: its status, state and problems."""
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    answer = json.loads(body) if body else {}
    return status, answer.get("state", ""), answer.get("problems", [])


def events_off(port: int) -> bool:
    """Whether /healthz says why live events are off (beyond "not connected yet")."""
    return any(problem.startswith("live events off: ")
               and problem != f"live events off: {NOT_CONNECTED_YET}"
               for problem in health(port)[2])


def metric(port: int, line: str) -> float | None:
    """The value of metric ``line`` (name and labels), or None if absent."""
    text = get(f"http://127.0.0.1:{port}/metrics")[1]
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def is_exact_copy(db: Path, fake: FakeCrisp) -> bool:
    """Whether the copy equals the fake's truth now (see `assert_exact_copy`)."""
    try:
        assert_exact_copy(db, fake)
    except AssertionError:
        return False
    return True


def stop(child: subprocess.Popen[str]) -> str:
    """SIGTERM: the child must exit 0 within 15 s; its stderr."""
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == 0, stderr
    return stderr


OUTAGES: dict[str, tuple[Callable[[FakeCrisp], object], Callable[[FakeCrisp], object]]] = {
    "discovery-404": (lambda fake: fake.take_rtm_down(discovery_status=404),
                      lambda fake: fake.bring_rtm_back()),
    "socket-port-closed": (lambda fake: fake.take_rtm_down(),
                           lambda fake: fake.bring_rtm_back()),
    "quota-spent-429": (lambda fake: fake.set_faults(routes=("/plugin/connect/endpoints",),
                                                     throttle_rate=1.0,
                                                     throttle_statuses=(429,)),
                        lambda fake: fake.set_faults()),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_without_rtm_it_reconciles_degraded_then_live_events_return(
    tmp_path: Path, outage: str
) -> None:
    """Old code: no reconciliation after the first sync, /healthz never opened, and after
    30 s the service died with EventsTimeoutError (exit 1)."""
    take_away, bring_back = OUTAGES[outage]
    db = tmp_path / "degraded.sqlite3"
    with FakeCrisp(conversations=10, messages=3, seed=21) as fake:
        take_away(fake)
        started = time.monotonic()
        with serving(fake, db, "--interval", "1") as (child, port):
            wait_for(lambda: health(port)[:2] == (200, "degraded") and events_off(port), 30,
                     "the degraded state, saying why")
            to_degraded = time.monotonic() - started
            assert metric(port, "crisp_socket_connected") == 0.0
            assert metric(port, 'crisp_state{state="degraded"}') == 1.0

            session = next(iter(fake.ground_truth()))
            polled = fake.add_messages(session, 1, content="polled")[0]
            wait_for(lambda: message_content(db, fake.website_id, session,
                                             polled["fingerprint"]) == "polled",
                     15, "a reconciliation to bring the message without events")
            wait_for(lambda: metric(port, 'crisp_sync_runs_total{kind="reconciliation",'
                                          'outcome="complete"}'), 5, "a reconciliation counted")

            time.sleep(2)  # still there, still degraded: no death after a timeout
            assert child.poll() is None
            back = time.monotonic()
            bring_back(fake)
            wait_for(lambda: metric(port, "crisp_socket_connected") == 1.0, 60,
                     "live events to come back")
            to_live = time.monotonic() - back
            wait_for(lambda: health(port)[:2] == (200, "ok"), 10, "the ok state")

            fake.edit_message(session, polled["fingerprint"], "live edit")
            wait_for(lambda: metric(port, 'crisp_events_applied_total{event="message:updated"}'),
                     10, "a live event to be applied")
            wait_for(lambda: is_exact_copy(db, fake), 10, "the next reconciliation")
            stderr = stop(child)
    assert stderr.count("live events off: ") == 1, stderr
    assert "live events on" in stderr
    print(f"\n{outage}: degraded {to_degraded:.1f} s after start (first sync included), "
          f"live events back {to_live:.1f} s after RTM returned")


def test_without_the_events_extra_it_reconciles_degraded(tmp_path: Path) -> None:
    """Old code: a traceback (ImportError) after the whole first sync, exit 1."""
    shim = tmp_path / "no-events-extra" / "socketio"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('socketio is not installed')\n")
    db = tmp_path / "no-extra.sqlite3"
    with FakeCrisp(conversations=5, messages=2, seed=27) as fake, serving(
        fake, db, "--interval", "1", env={"PYTHONPATH": f"{shim.parent}:{os.getcwd()}"}
    ) as (child, port):
        wait_for(lambda: health(port)[:2] == (200, "degraded") and events_off(port), 30,
                 "the degraded state, saying why")
        assert any("'events' extra" in problem for problem in health(port)[2]), health(port)
        session = next(iter(fake.ground_truth()))
        polled = fake.add_messages(session, 1, content="polled")[0]
        wait_for(lambda: message_content(db, fake.website_id, session,
                                         polled["fingerprint"]) == "polled",
                 15, "a reconciliation to bring the message")
        stderr = stop(child)
    assert stderr.count("live events off: ") == 1, stderr


def test_healthz_and_metrics_answer_during_a_slow_first_sync(tmp_path: Path) -> None:
    """Old code: both ports opened only once the whole first sync was done."""
    db = tmp_path / "slow.sqlite3"
    with FakeCrisp(conversations=60, messages=2, seed=22,
                   faults=Faults(latency_ms=40)) as fake, serving(
        fake, db, "--interval", "1h", "--workers", "2"
    ) as (child, port):
        status, state, _ = health(port)
        assert (status, state) == (200, "initial sync")
        wait_for(lambda: (metric(port, 'crisp_requests_total{status="200"}') or 0) > 0, 10,
                 "the first sync's requests to be counted")
        assert metric(port, 'crisp_state{state="initial sync"}') == 1.0
        assert metric(port, 'crisp_sync_runs_total{kind="first",outcome="complete"}') is None
        wait_for(lambda: health(port)[1] in ("ok", "degraded"), 60, "the first sync to end")
        assert metric(port, 'crisp_sync_runs_total{kind="first",outcome="complete"}') == 1.0
        stop(child)
        assert_exact_copy(db, fake)


def test_healthz_follows_a_redis_outage_and_its_end(
    tmp_path: Path, redis_server_factory: Callable[[], RedisServer]
) -> None:
    """Old code: Redis going away showed nowhere (its backends fall back to local ones)."""
    redis = redis_server_factory()
    with FakeCrisp(conversations=5, messages=2, seed=26) as fake, serving(
        fake, tmp_path / "redis.sqlite3", "--interval", "1h", "--redis-url", redis.url,
        "--health-threshold", "3",
    ) as (child, port):
        wait_for(lambda: health(port)[:2] == (200, "ok"), 30, "the ok state")
        redis.kill()
        killed = time.monotonic()
        wait_for(lambda: health(port)[1] == "degraded", 15, "the degraded state")
        to_degraded = time.monotonic() - killed
        status, _, problems = health(port)
        assert status == 200
        assert any(problem.startswith("Redis has been failing") for problem in problems), problems
        secret = redis.url.split("@")[0].rsplit(":", 1)[1]
        assert all(secret not in problem for problem in problems)
        wait_for(lambda: health(port)[0] == 503, 30, "/healthz to fail")
        to_failing = time.monotonic() - killed
        redis.start()
        started = time.monotonic()
        wait_for(lambda: health(port)[:2] == (200, "ok"), 30, "/healthz to recover")
        to_ok = time.monotonic() - started
        stop(child)
    print(f"\nRedis killed: degraded after {to_degraded:.1f} s, 503 after {to_failing:.1f} s "
          f"(threshold 3 s); restarted: 200 after {to_ok:.1f} s")
