"""Section 3: requests under a server-side rate limit, and a spent daily quota.

Four measurements:

* **A full sync under a fixed limit of R requests/s.** The fake Crisp enforces a token bucket
  per token (R/s, burst B) and answers 429 with ``Retry-After`` when it is empty. A full
  `sync_website` (conversations, messages, people, operators; several workers) runs against
  it; then the database is compared with the fake's ground truth: every conversation and
  message must be there, exactly as served. Two clients sync: one configured with the
  server's rate (``rate_limit=R``) and half its burst, as the README advises for a known
  limit, and a default one, which has no rate configured and learns the limit from the share
  of 429s (``rate_limit="adaptive"``).
* **An unknown limit that changes.** A default client, 16 threads asking for conversations
  as fast as they can, against a bucket that allows one rate (40/s in the presets) and then
  another (20/s), answering the excess 429 *without* ``Retry-After`` (Crisp documents no such
  header): the client has nothing but the 429s to learn from. Every attempt is timed by an
  innermost layer, and each phase is judged on its steady state (its last seconds), once
  the client has had time to find the new limit; the start (the 429s in the first second)
  shows the slow start.
* **Incidental vs real-limit ``Retry-After``.** 16 threads make a fixed number of calls
  against a server that faults every 10th request at random (a third of the faults a 429
  with ``Retry-After: 1``, the rest 5xx) and has no real limit, then against a real limit
  that answers its excess 429 with ``Retry-After``; by a default client and by one whose
  bucket pauses every caller for every ``Retry-After`` (a fixed rate far above the limit).
* **A spent daily quota.** A default client, 16 threads, against a fake whose daily quota
  runs out (then a plain 429 for everything, as Crisp answers): the requests sent after it,
  how long until every caller stopped with `QuotaSpentError`, and what a later call sends.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.config import Config
from crisp_api import Crisp
from crisp_api.errors import QuotaSpentError, RouteError
from crisp_api.sync import RequestCounter, SQLiteStore, install, sync_website
from crisp_api.testing import FakeCrispProcess, Faults
from middleware import Handler, RateLimit, Request, Response

CONFIGURED = "rate_limit=R, burst=B/2"
ADAPTIVE = "default (adaptive)"
THROTTLED = (429, 420)
"""The statuses by which Crisp refuses a request for its rate (420: some older routes)."""
STEADY_S = 5.0
"""The last seconds of each phase of the changing limit that make its steady state (at most
three quarters of the phase, for the short phases of a smoke test)."""
CHANGING_THREADS = 16
CHANGING_BURST = 10
CHANGING_CONVERSATIONS = 50


@dataclass(frozen=True)
class RateRun:
    """One sync under the server's fixed limit."""

    client: str
    rate: float
    server_burst: int
    workers: int
    conversations: int
    seconds: float
    successful_requests: int
    achieved_per_s: float
    fraction_of_rate: float
    throttled: int
    throttled_share: float
    """Share of the server's answers that were 429."""
    retries: int
    complete: bool
    conversations_lost: int
    messages_lost: int


@dataclass(frozen=True)
class Phase:
    """One phase of the changing limit; rates and shares are those of its steady state."""

    allowed_per_s: float
    seconds: float
    steady_after_s: float
    """Seconds from the start of the phase left out of the steady state (the rest, its last
    seconds, is the steady state)."""
    achieved_per_s: float
    fraction_of_allowed: float
    throttled_share: float
    """Share of the attempts in the steady state answered 429 (or 420)."""
    failed_calls: int
    """Calls that ended in a `RouteError` (out of retries) during the whole phase."""


@dataclass(frozen=True)
class ChangingLimit:
    """A default client against a limit it is not told, which changes mid-run."""

    threads: int
    server_burst: int
    phases: list[Phase]
    attempts: int
    successful: int
    throttled_share: float
    """Share of every attempt of the run answered 429 (or 420), transitions included."""
    failed_calls: int
    first_second_attempts: int
    first_second_throttled: int
    """Attempts answered in the first second of the run, and how many of them 429 (or 420):
    the start, before anything was learnt."""


INCIDENTAL = "incidental 429s, no limit"
REAL_LIMIT = "a real limit"
PAUSING = "pause on every Retry-After"


@dataclass(frozen=True)
class RetryAfterRun:
    """A fixed number of calls against incidental 429s or a real limit, both with
    ``Retry-After``."""

    case: str
    client: str
    calls: int
    seconds: float
    throttled: int
    """Answers 429 sent by the server."""
    pauses: int
    """Pauses of the client's bucket: times every caller was held back."""
    failed_calls: int


@dataclass(frozen=True)
class SpentRun:
    """A default client meeting a spent daily quota."""

    quota: int
    threads: int
    sent_after_spent: int
    """Requests the server refused once the quota was spent."""
    seconds_to_stop: float
    """From the first refusal to the last caller stopped."""
    stopped_by_quota_error: int
    """Callers whose last call failed with `QuotaSpentError`."""
    reset_at: str
    """The reset time the error carried (UTC)."""
    later_call_sent: int
    """Requests a call made after the stop sent (0: it failed fast)."""

def run(config: Config) -> list[RateRun]:
    """The sync of the configured client, then (unless its size is 0) that of the default."""
    burst = max(1, config.rate_burst // 2)
    runs = [_one(config, CONFIGURED, config.rate_conversations,
                 {"rate_limit": config.rate, "burst": burst})]
    if config.default_conversations > 0:
        runs.append(_one(config, ADAPTIVE, config.default_conversations, {}))
    return runs


def changing(config: Config) -> ChangingLimit | None:
    """The default client against ``config.changing_rates``, ``config.changing_seconds`` each
    (``None`` if there is no rate or no time per phase)."""
    rates, seconds = config.changing_rates, config.changing_seconds
    if not rates or seconds <= 0:
        return None
    print(f"benchmarks: rate limit, unknown limit that changes "
          f"({', '.join(f'{rate:g}/s' for rate in rates)}, {seconds:g} s each)", file=sys.stderr)
    timeline = _Timeline()
    failures: list[float] = []
    stop = threading.Event()
    with (
        FakeCrispProcess(conversations=CHANGING_CONVERSATIONS, messages=5, rtm=False) as fake,
        fake.client(cache_ttl=0, pool_size=CHANGING_THREADS) as client,
    ):
        client.use(timeline)
        sessions = list(fake.ground_truth())

        def work(offset: int) -> None:
            index = offset
            while not stop.is_set():
                try:
                    client.website.get_conversation(fake.website_id,
                                                    sessions[index % len(sessions)])
                except RouteError:  # out of retries: counted, and the thread goes on
                    failures.append(time.monotonic())
                index += CHANGING_THREADS

        threads = [threading.Thread(target=work, args=(offset,), daemon=True)
                   for offset in range(CHANGING_THREADS)]
        starts = []
        for rate in rates:
            fake.set_faults(_unannounced(rate))
            starts.append(time.monotonic())
            if len(starts) == 1:
                for thread in threads:
                    thread.start()
            time.sleep(seconds)
        end = time.monotonic()
        stop.set()
        for thread in threads:
            thread.join(60)
    bounds = [*starts, end]
    settle = seconds - min(STEADY_S, 0.75 * seconds)
    phases = []
    for index, rate in enumerate(rates):
        start, stop_at = bounds[index], bounds[index + 1]
        ok, throttled, attempts = timeline.count(start + settle, stop_at)
        achieved = ok / (stop_at - start - settle)
        phases.append(Phase(
            allowed_per_s=rate,
            seconds=round(stop_at - start, 3),
            steady_after_s=settle,
            achieved_per_s=achieved,
            fraction_of_allowed=achieved / rate,
            throttled_share=throttled / max(1, attempts),
            failed_calls=sum(start <= at < stop_at for at in failures),
        ))
    ok, throttled, attempts = timeline.count(starts[0], end)
    first_attempts, first_throttled = timeline.first_second()
    return ChangingLimit(
        threads=CHANGING_THREADS,
        server_burst=CHANGING_BURST,
        phases=phases,
        attempts=attempts,
        successful=ok,
        throttled_share=throttled / max(1, attempts),
        failed_calls=sum(starts[0] <= at < end for at in failures),
        first_second_attempts=first_attempts,
        first_second_throttled=first_throttled,
    )


def retry_after(config: Config) -> list[RetryAfterRun]:
    """Incidental 429s, then a real limit of ``config.retry_after_limit``/s, both with
    ``Retry-After``: ``config.retry_after_calls`` calls each, by a default client and by one
    that pauses for every ``Retry-After`` (none if that number is 0)."""
    if config.retry_after_calls <= 0:
        return []
    incidental = Faults(error_rate=0.2 / 3, throttle_rate=0.1 / 3, throttle_statuses=(429,),
                        retry_after=1, seed=7)
    real = Faults(bucket_rate=config.retry_after_limit, bucket_burst=CHANGING_BURST)
    runs = []
    with FakeCrispProcess(conversations=CHANGING_CONVERSATIONS, messages=5, rtm=False) as fake:
        for case, faults in ((INCIDENTAL, incidental), (REAL_LIMIT, real)):
            for client, options in ((ADAPTIVE, {}), (PAUSING, {"rate_limit": 1e6})):
                print(f"benchmarks: rate limit, {case}, {client}", file=sys.stderr)
                fake.set_faults(faults)  # afresh: the same draws, a full bucket
                runs.append(_calls(fake, config.retry_after_calls, case, client, options))
    return runs


def _calls(fake: FakeCrispProcess, calls: int, case: str, name: str,
           options: dict[str, Any]) -> RetryAfterRun:
    failures = []
    with fake.client(cache_ttl=0, pool_size=CHANGING_THREADS, **options) as client:
        sessions = list(fake.ground_truth())
        next_call = iter(range(calls))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    index = next(next_call, None)
                if index is None:
                    return
                try:
                    client.website.get_conversation(fake.website_id,
                                                    sessions[index % len(sessions)])
                except RouteError as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(CHANGING_THREADS)]
        fake.reset_stats()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        throttled = fake.stats.statuses.get(429, 0)
        pauses = _rate_limit(client).backend.pauses
    return RetryAfterRun(case=case, client=name, calls=calls, seconds=round(elapsed, 3),
                         throttled=throttled, pauses=pauses, failed_calls=len(failures))


def quota_spent(config: Config) -> SpentRun | None:
    """A default client, 16 threads, against a fake whose daily quota of
    ``config.spent_quota`` runs out (None if that is 0)."""
    quota = config.spent_quota
    if quota <= 0:
        return None
    print(f"benchmarks: rate limit, a spent daily quota of {quota}", file=sys.stderr)
    timeline = _Timeline()
    stopped: list[tuple[float, BaseException | None]] = []
    with (
        FakeCrispProcess(conversations=CHANGING_CONVERSATIONS, messages=5, rtm=False,
                         faults=Faults(daily_quota=quota)) as fake,
        fake.client(cache_ttl=0, pool_size=CHANGING_THREADS) as client,
    ):
        client.use(timeline)
        sessions = list(fake.ground_truth())

        def work(offset: int) -> None:
            index = offset
            while True:
                try:
                    client.website.get_conversation(fake.website_id,
                                                    sessions[index % len(sessions)])
                except QuotaSpentError as exc:
                    stopped.append((time.monotonic(), exc))
                    return
                except RouteError:  # out of retries: the caller goes on, as a sync would
                    pass
                index += CHANGING_THREADS

        threads = [threading.Thread(target=work, args=(offset,), daemon=True)
                   for offset in range(CHANGING_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        refused = fake.stats.faults.get("quota", 0)
        requests = fake.stats.requests
        reset_at = "-"
        try:
            client.website.get_conversation(fake.website_id, sessions[0])
        except QuotaSpentError as exc:
            reset_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exc.reset_at))
        later = fake.stats.requests - requests
    first_refusal = timeline.first(THROTTLED)
    last_stop = max((at for at, _ in stopped), default=float("nan"))
    return SpentRun(
        quota=quota,
        threads=CHANGING_THREADS,
        sent_after_spent=refused,
        seconds_to_stop=round(last_stop - first_refusal, 1),
        stopped_by_quota_error=len(stopped),
        reset_at=reset_at,
        later_call_sent=later,
    )


def _rate_limit(client: Crisp) -> RateLimit:
    """The client's rate-limit layer."""
    [layer] = [layer for layer in client.middleware if isinstance(layer, RateLimit)]
    return layer


def _unannounced(rate: float) -> Faults:
    """A fresh bucket of ``rate``/s whose 429s carry no ``Retry-After``."""
    return Faults(bucket_rate=rate, bucket_burst=CHANGING_BURST, bucket_retry_after=False)


class _Timeline:
    """Innermost layer recording when each attempt (retries included) was answered, and with
    what status: the client's own counters would not say when."""

    name = "timeline"

    def __init__(self) -> None:
        self._answers: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request, call_next: Handler) -> Response:
        response = call_next(request)
        with self._lock:
            self._answers.append((time.monotonic(), response.status))
        return response

    def first(self, statuses: tuple[int, ...]) -> float:
        """When the first attempt with one of ``statuses`` was answered (NaN: none was)."""
        with self._lock:
            return next((at for at, status in self._answers if status in statuses),
                        float("nan"))

    def first_second(self) -> tuple[int, int]:
        """(all, throttled) attempts answered within a second of the first answer."""
        with self._lock:
            if not self._answers:
                return 0, 0
            start = self._answers[0][0]
            inside = [status for at, status in self._answers if at < start + 1.0]
        return len(inside), sum(status in THROTTLED for status in inside)

    def count(self, start: float, end: float) -> tuple[int, int, int]:
        """(successful, throttled, all) attempts answered between two instants."""
        with self._lock:
            inside = [status for at, status in self._answers if start <= at < end]
        return (sum(200 <= status < 300 for status in inside),
                sum(status in THROTTLED for status in inside), len(inside))


def _one(config: Config, name: str, conversations: int, options: dict[str, Any]) -> RateRun:
    print(f"benchmarks: rate limit, {name}", file=sys.stderr)
    faults = Faults(bucket_rate=config.rate, bucket_burst=config.rate_burst)
    with (
        FakeCrispProcess(conversations=conversations, messages=30, faults=faults,
                         rtm=False) as fake,
        fake.client(**options) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        counter = RequestCounter()
        install(counter, client)
        path = Path(folder) / "sync.sqlite3"
        fake.reset_stats()
        started = time.monotonic()
        complete = _sync(client, fake.website_id, path, config.rate_workers)
        elapsed = time.monotonic() - started
        stats, counts = fake.stats, counter.snapshot()
        lost = _lost(path, fake)
    successful = stats.successes
    throttled = sum(stats.statuses.get(status, 0) for status in THROTTLED)
    return RateRun(
        client=name,
        rate=config.rate,
        server_burst=config.rate_burst,
        workers=config.rate_workers,
        conversations=conversations,
        seconds=round(elapsed, 3),
        successful_requests=successful,
        achieved_per_s=successful / elapsed,
        fraction_of_rate=successful / elapsed / config.rate,
        throttled=counts.rate_limited,
        throttled_share=throttled / max(1, sum(stats.statuses.values())),
        retries=counts.retries,
        complete=complete,
        conversations_lost=lost[0],
        messages_lost=lost[1],
    )


def _sync(client: Crisp, website_id: str, path: Path, workers: int) -> bool:
    """Whether a full sync into ``path`` completed (a listing that fails counts as not)."""
    with SQLiteStore(path) as store:
        try:
            return sync_website(client, website_id, store, workers=workers).complete
        except RouteError:
            return False


def _lost(path: Path, fake: FakeCrispProcess) -> tuple[int, int]:
    """Conversations and messages of the ground truth missing from, or different in, the copy."""
    db = sqlite3.connect(path)
    try:
        conversations = {
            row[0]: json.loads(row[1])
            for row in db.execute("SELECT session_id, data FROM conversations")
        }
        messages = {
            (row[0], row[1]): json.loads(row[2])
            for row in db.execute("SELECT session_id, fingerprint, data FROM messages")
        }
    finally:
        db.close()
    truth = fake.ground_truth()
    lost_conversations = sum(
        conversations.get(session_id) != item.conversation for session_id, item in truth.items()
    )
    lost_messages = sum(
        messages.get((session_id, message["fingerprint"])) != message
        for session_id, item in truth.items()
        for message in item.messages
    )
    return lost_conversations, lost_messages
