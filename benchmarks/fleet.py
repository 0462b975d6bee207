"""Section 6: PostgreSQL as the shared store, and a fleet of ``crisp-sync`` processes sharing the
work (the issue's three measurements).

* **Store throughput.** ``store_conversations`` conversations of ``store_messages`` messages are
  written through the `Store` API (`save_conversation`, each conversation with all its messages
  in one transaction) from ``store_threads`` threads, as the sync engine's workers do, into a
  fresh SQLite file and a fresh PostgreSQL database: message rows per second for the first
  inserts, then for a second pass of the very same rows (nothing to write: the stores compare
  and skip them, which is what every rerun over an overlap does).
* **Fleet speed-up.** The real CLI, ``crisp-sync --all-websites --db postgresql://...``, as child
  processes against a fake Crisp in another process (``fleet_websites`` websites, an added
  latency on every request): the wall time of one process, then of ``fleet_processes``
  processes started at once, each run on a fresh database and a fresh fake of the same seed
  (so both are a first full sync). The workers log JSON (``-v``), which splits each run into
  start-up, syncing and tail. The fake counts the requests: a fleet that shares the work
  should send about what one process does. The CPU of every party is measured too, since a
  small machine can run out of cores before the design runs out of parallelism: a second,
  latency-dominated configuration (higher latency, smaller websites) shows what the design
  gives when the CPU is not the limit. The workers' bytecode is compiled once beforehand into
  a cache of the section's own, as an installed package has it (this environment may set
  ``PYTHONDONTWRITEBYTECODE``, which would have every worker compile the package at start).
  Beside each ratio, what the schedule model (`benchmarks.fleet_model`) gives the same
  configuration with the runs' own start-ups and tails: the bound under perfect balance, and
  whole websites over many claim orders, with and without helpers.
* **Takeover.** Two processes with ``--lease-ttl``, logging JSON; once worker A has started a
  website it has not finished, it gets SIGKILL, and the time is taken from the kill to worker
  B's ``website.sync.started`` of that website (both clocks are this machine's).

PostgreSQL is the server of ``--postgres-url`` (a database is created on it per run through a
maintenance connection, and dropped after), else a private server started for the section
(`tests.postgres_server.PostgresServer`, tuned for tests: fsync off). Without either, the
section says why and measures SQLite only.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks import fleet_model, pg_methods
from benchmarks.config import Config
from benchmarks.fleet_model import Bound
from benchmarks.pg_methods import MethodRun
from benchmarks.stats import median, paired_ratios
from crisp_api.sync import Changes, MessageSpan, SQLiteStore, Store
from crisp_api.testing import FakeCrispProcess, Faults

SCHEMES = ("postgresql://", "postgres://")
"""The URL schemes ``crisp-sync --db`` takes as PostgreSQL."""
CLI_WORKERS = 8
"""``crisp-sync --workers`` (threads per process): the CLI's default, stated in the report."""
STORE_WEBSITE = "bench-website"
STORE_SEED = 61
FLEET_SEED = 62
TAKEOVER_SEED = 63
TAKEOVER_WEBSITES = 2
"""Each worker holds one: once B has finished its own, it has nothing left but A's to take."""
RUN_TIMEOUT_S = 900.0
"""A fleet run that has not ended by then is killed (and reported incomplete)."""
REAP_POLL_S = 0.005
LOG_POLL_S = 0.01
STARTED, ENDED = "website.sync.started", "website.sync.ended"
FIRST_RUN = "first run"
"""Runs on empty databases: the credential's first, each process's adaptive rate opening with
its slow start from the gentle start (`middleware.adaptive`)."""
KNOWN = "credential known"
"""Runs on databases holding the allowance the same runs left (what every run after a
credential's first has: its slow start resumes from the rate reached without a refusal), and
no row of the websites: still a first full sync of them."""
STARTS = (FIRST_RUN, KNOWN)
ISSUE = "issue's configuration"
LATENCY_BOUND = "latency-dominated"
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

Batch = Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]
"""Conversations to save, each with its messages."""


@dataclass(frozen=True)
class StorePass:
    """One pass over every conversation: how fast, and how many message rows it wrote."""

    seconds: float
    rows_per_s: float
    conversations_per_s: float
    written: int


@dataclass(frozen=True)
class StoreRun:
    """A store's rounds, each on a fresh store: first inserts, then the same rows again
    (unchanged); the rates are medians over the rounds."""

    store: str
    conversations: int
    rows: int
    threads: int
    inserts: list[StorePass]
    unchanged: list[StorePass]
    insert_rows_per_s: float
    unchanged_rows_per_s: float


@dataclass(frozen=True)
class FleetRun:
    """``processes`` crisp-sync processes started at once on a fresh database and fake.

    ``seconds`` (from starting the processes to the last exit) splits into ``startup_s``
    (until the first ``website.sync.started`` of any), ``syncing_s`` (until the last
    ``website.sync.ended``) and ``tail_s`` (until the last exit). ``website_syncs`` counts the
    website syncs the logs show (more than the websites when some were synced twice).

    CPU figures are seconds of user and system time: ``cli_cpu_s`` per process (reaped with
    ``wait4``), the fake's process, PostgreSQL's server processes (NaN when the server is not
    this section's own), and the whole machine's busy and stolen (hypervisor) time, which also
    counts whatever else ran meanwhile.
    """

    processes: int
    seconds: float
    startup_s: float
    syncing_s: float
    tail_s: float
    website_syncs: int
    requests: int
    statuses: list[int | None]
    complete: bool
    conversations: int
    messages: int
    cli_cpu_s: list[float]
    fake_cpu_s: float
    postgres_cpu_s: float
    machine_busy_s: float
    machine_steal_s: float

    @property
    def cpu_s(self) -> float:
        """The CPU the sync itself cost: crisp-sync, the fake and PostgreSQL (when known)."""
        known = self.postgres_cpu_s if math.isfinite(self.postgres_cpu_s) else 0.0
        return sum(self.cli_cpu_s) + self.fake_cpu_s + known


@dataclass(frozen=True)
class SpeedUp:
    """One process against a fleet, on the same data and latency."""

    label: str
    start: str
    """`FIRST_RUN` or `KNOWN`: what the database held of the credential when the runs began."""
    latency_ms: float
    websites: int
    conversations: int
    messages: int
    workers: int
    single: FleetRun
    fleet: FleetRun
    speedup: float
    syncing_speedup: float
    """The same ratio over the syncing phase only (first website started to last ended)."""
    request_ratio: float
    cpu_ceiling: float
    """The highest speed-up this machine's cores allow: one process's wall time over the
    fleet's CPU seconds spread evenly on every core (a fleet cannot be faster than that)."""
    model: Bound | None
    """What the schedule model (`benchmarks.fleet_model`) gives this configuration with these
    runs' start-ups and tails, CPU left out; None when a run did not time its phases."""


@dataclass(frozen=True)
class Takeover:
    """Worker A killed mid-website; how long until worker B started that website."""

    ttl_s: float
    latency_ms: float
    conversations: int
    website_id: str
    seconds: float
    b_free_s: float
    """From the kill to B's last ``website.sync.ended`` before the takeover: B was busy with
    its own website until then (negative: it was already waiting at the kill)."""
    b_status: int | None
    complete: bool
    note: str


@dataclass(frozen=True)
class FleetResult:
    """What section 6 measured. ``postgres`` describes the server; ``postgres_missing`` says
    why there was none (then only SQLite was measured)."""

    postgres: str
    postgres_missing: str | None
    cores: int
    stores: list[StoreRun]
    postgres_vs_sqlite_insert: float
    """PostgreSQL's rows/s over SQLite's, median of the per-round ratios (NaN: no PostgreSQL)."""
    postgres_vs_sqlite_unchanged: float
    speedups: list[SpeedUp]
    takeover: Takeover | None
    methods: list[MethodRun] = field(default_factory=list)
    """psycopg 3's ways of writing, raced on the store throughput's batch (`pg_methods`)."""


def run(config: Config) -> FleetResult:
    """The three measurements, with one PostgreSQL server for the whole section."""
    with postgres(config.postgres_url) as found, tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        databases = found if isinstance(found, Databases) else None
        print("benchmarks: fleet, store throughput", file=sys.stderr)
        stores = store_throughput(config, databases, work)
        methods = [] if databases is None else pg_methods.run(
            conversations_to_save(config.store_conversations, config.store_messages),
            config.store_threads, config.store_rounds, databases)
        speedups: list[SpeedUp] = []
        takeover: Takeover | None = None
        if databases is not None:
            warm_bytecode(work)
            configurations = [(ISSUE, config.fleet_latency_ms, config.fleet_conversations,
                               config.fleet_messages)]
            if config.fleet_slow_latency_ms > 0:
                configurations.append((LATENCY_BOUND, config.fleet_slow_latency_ms,
                                       config.fleet_slow_conversations,
                                       config.fleet_slow_messages))
            for label, latency, conversations, messages in configurations:
                speedups += speed_up(config, databases, work, label, latency, conversations,
                                     messages)
            print("benchmarks: fleet, takeover", file=sys.stderr)
            takeover = take_over(config, databases, work)
    return FleetResult(
        postgres="" if databases is None else databases.description,
        postgres_missing=found if isinstance(found, str) else None,
        cores=_cores(), stores=stores,
        postgres_vs_sqlite_insert=_paired(stores, "inserts"),
        postgres_vs_sqlite_unchanged=_paired(stores, "unchanged"),
        speedups=speedups, takeover=takeover, methods=methods,
    )


# 1. Store throughput ----------------------------------------------------------------------


def store_throughput(
    config: Config, databases: Databases | None, work: Path
) -> list[StoreRun]:
    """``config.store_rounds`` rounds, SQLite then PostgreSQL (when there is one) in each,
    every round on fresh stores."""
    batch = conversations_to_save(config.store_conversations, config.store_messages)
    rounds: dict[str, list[tuple[StorePass, StorePass]]] = {"SQLite": []}
    for number in range(config.store_rounds):
        path = work / f"store-{number}.sqlite3"
        rounds["SQLite"].append(_both_passes(config, batch, partial(SQLiteStore, path)))
        if databases is not None:
            rounds.setdefault("PostgreSQL", []).append(_postgres_passes(config, batch, databases))
    rows = sum(len(messages) for _, messages in batch)
    return [
        StoreRun(
            store=name, conversations=len(batch), rows=rows, threads=config.store_threads,
            inserts=[insert for insert, _ in passes],
            unchanged=[unchanged for _, unchanged in passes],
            insert_rows_per_s=median([insert.rows_per_s for insert, _ in passes]),
            unchanged_rows_per_s=median([unchanged.rows_per_s for _, unchanged in passes]),
        )
        for name, passes in rounds.items()
    ]


def _both_passes(
    config: Config, batch: Batch, open_store: Callable[[], AbstractContextManager[Store]]
) -> tuple[StorePass, StorePass]:
    """Both passes on the fresh store ``open_store()`` makes."""
    rows = sum(len(messages) for _, messages in batch)
    with open_store() as store:
        insert = _save_all(store, batch, config.store_threads, rows)
        unchanged = _save_all(store, batch, config.store_threads, rows)
    return insert, unchanged


def _postgres_passes(
    config: Config, batch: Batch, databases: Databases
) -> tuple[StorePass, StorePass]:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    with databases.database() as url:
        return _both_passes(
            config, batch,
            lambda: PostgresStore(url, pool_size=max(16, config.store_threads + 4)),
        )


def _paired(stores: Sequence[StoreRun], kind: str) -> float:
    """PostgreSQL over SQLite, median of the per-round ratios of ``kind`` passes."""
    by_name = {store.store: store for store in stores}
    if "PostgreSQL" not in by_name:
        return float("nan")
    postgres_passes = getattr(by_name["PostgreSQL"], kind)
    sqlite_passes = getattr(by_name["SQLite"], kind)
    return median(paired_ratios([p.rows_per_s for p in postgres_passes],
                                [p.rows_per_s for p in sqlite_passes]))


def _save_all(store: Store, batch: Batch, threads: int, rows: int) -> StorePass:
    """Every conversation saved with all its messages, from ``threads`` threads."""

    def save(item: tuple[dict[str, Any], list[dict[str, Any]]]) -> Changes:
        conversation, messages = item
        return store.save_conversation(
            STORE_WEBSITE, conversation, MessageSpan(messages=messages, since=None))[1]

    started = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-store") as pool:
        changes = list(pool.map(save, batch))
    seconds = max(time.perf_counter() - started, 1e-9)
    written = sum(change.added + change.updated + change.removed for change in changes)
    return StorePass(seconds=seconds, rows_per_s=rows / seconds,
                     conversations_per_s=len(batch) / seconds, written=written)


def conversations_to_save(
    count: int, messages: int, seed: int = STORE_SEED
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Seeded conversations and their messages, shaped like Crisp's answers (about 400 bytes
    of JSON a message), ``messages`` each."""
    rng = random.Random(seed)
    words = ("hello", "order", "refund", "thanks", "shipping", "account", "please", "invoice",
             "password", "delivery", "question", "the", "my", "is", "not", "working", "today")
    batch = []
    for number in range(count):
        session_id = f"session_{number:06d}_{rng.getrandbits(48):012x}"
        created = 1_700_000_000_000 + rng.randrange(86_400_000)
        stamps = sorted(created + rng.randrange(3_600_000) for _ in range(messages))
        rows: list[dict[str, Any]] = []
        for index, stamp in enumerate(stamps):
            visitor = rng.random() < 0.5
            rows.append({
                "session_id": session_id, "website_id": STORE_WEBSITE, "type": "text",
                "from": "user" if visitor else "operator", "origin": "chat",
                "content": " ".join(rng.choice(words) for _ in range(rng.randrange(4, 30))),
                "fingerprint": rng.getrandbits(40) * 1000 + index,
                "user": {"nickname": f"visitor {number}" if visitor else "Agent",
                         "user_id": session_id if visitor else "operator-1"},
                "mentions": [], "read": "chat", "delivered": "chat", "stamped": True,
                "timestamp": stamp,
            })
        conversation = {
            "session_id": session_id, "website_id": STORE_WEBSITE, "state": "resolved",
            "is_verified": False, "availability": "offline",
            "meta": {"nickname": f"visitor {number}", "email": f"visitor{number}@example.com"},
            "last_message": rows[-1]["content"] if rows else "",
            "created_at": created, "updated_at": stamps[-1] if stamps else created,
        }
        batch.append((conversation, rows))
    return batch


# 2. Fleet speed-up ------------------------------------------------------------------------


def speed_up(
    config: Config, databases: Databases, work: Path, label: str, latency: float,
    conversations: int, messages: int,
) -> list[SpeedUp]:
    """One process, then ``config.fleet_processes`` at once, on the same seeded data: first as
    the credential's first run (`FIRST_RUN`), then again on fresh databases holding the
    allowance each of those runs left (`KNOWN`)."""
    runs: dict[tuple[str, int], FleetRun] = {}
    kept: dict[int, list[dict[str, Any]]] = {}
    shapes = fleet_model.measure_shapes(config.fleet_websites, conversations, messages,
                                        FLEET_SEED, environment=cli_environment(work))
    for start in STARTS:
        for processes in (1, config.fleet_processes):
            print(f"benchmarks: fleet, {label}, {latency:g} ms, {start}, {processes} "
                  "process(es)", file=sys.stderr)
            with FakeCrispProcess(
                websites=config.fleet_websites, conversations=conversations,
                messages=messages, seed=FLEET_SEED, rtm=False,
                faults=Faults(latency_ms=latency),
            ) as fake:
                name = f"{label}-{start}-{processes}".replace(" ", "-").replace("'", "")
                runs[start, processes], kept[processes] = _fleet_run(
                    fake, databases, work, name, processes,
                    allowance=kept.get(processes, []) if start == KNOWN else [])
    return [
        _speed_up(label, start, latency, config, conversations, messages,
                  runs[start, 1], runs[start, config.fleet_processes], shapes)
        for start in STARTS
    ]


def _speed_up(label: str, start: str, latency: float, config: Config, conversations: int,
              messages: int, single: FleetRun, fleet: FleetRun,
              shapes: Sequence[fleet_model.Shape]) -> SpeedUp:
    floor = fleet.cpu_s / max(1, _cores())
    timed = (single.startup_s, fleet.startup_s, single.tail_s, fleet.tail_s)
    model = None if not all(map(math.isfinite, timed)) else fleet_model.bound(
        shapes, fleet_model.Timing(config.fleet_processes, CLI_WORKERS, latency / 1000.0,
                                   *timed))
    return SpeedUp(
        label=label, start=start, latency_ms=latency, websites=config.fleet_websites,
        conversations=conversations, messages=messages, workers=CLI_WORKERS,
        single=single, fleet=fleet,
        speedup=single.seconds / fleet.seconds if fleet.seconds else float("nan"),
        syncing_speedup=single.syncing_s / fleet.syncing_s if fleet.syncing_s > 0
        else float("nan"),
        request_ratio=fleet.requests / single.requests if single.requests else float("nan"),
        cpu_ceiling=single.seconds / floor if floor else float("nan"),
        model=model,
    )


def _fleet_run(
    fake: FakeCrispProcess, databases: Databases, work: Path, name: str, processes: int, *,
    allowance: list[dict[str, Any]],
) -> tuple[FleetRun, list[dict[str, Any]]]:
    """``processes`` workers on a fresh database, holding ``allowance`` (rows of the table of
    that name) when there is any; waits for every one, then checks the copy. The run, and the
    allowance it left."""
    logs = work / name
    logs.mkdir(parents=True, exist_ok=True)
    truth = _truth_counts(fake)
    with databases.database() as url:
        if allowance:
            databases.seed_allowance(url, allowance)
        fake.reset_stats()
        fake_before, pg_before = _process_cpu(fake.pid), databases.cpu_seconds()
        busy_before, steal_before = _machine_cpu()
        paths = [logs / f"worker{number}.log" for number in range(processes)]
        handles = [path.open("wb") for path in paths]
        began = datetime.now(UTC)
        started = time.monotonic()
        try:
            children = [_worker(fake, url, work, handle, "-v", "--log-format", "json")
                        for handle in handles]
            statuses, cpu = _reap(children, started + RUN_TIMEOUT_S)
        finally:
            for handle in handles:
                handle.close()
        seconds = time.monotonic() - started
        busy_after, steal_after = _machine_cpu()
        time.sleep(0.2)  # PostgreSQL reaps the workers' backends, and counts their CPU
        requests = fake.stats.requests
        postgres_cpu = databases.cpu_seconds() - pg_before
        fake_cpu = _process_cpu(fake.pid) - fake_before
        stored = databases.count(url)
        left = databases.allowance(url)
    failed = [path for path, status in zip(paths, statuses, strict=True) if status != 0]
    for path in failed:
        tail = path.read_text(encoding="utf-8", errors="replace")[-1000:]
        print(f"benchmarks: fleet worker {path.name} failed: {tail}", file=sys.stderr)
    every = [sync for path in paths for sync in syncs(path)]
    first = min((start for _, start, _ in every), default=None)
    last = max((end for _, _, end in every if end is not None), default=None)
    startup = float("nan") if first is None else (first - began).total_seconds()
    syncing = (float("nan") if first is None or last is None
               else (last - first).total_seconds())
    return FleetRun(
        processes=processes, seconds=seconds, startup_s=startup, syncing_s=syncing,
        tail_s=seconds - startup - syncing, website_syncs=len(every),
        requests=requests, statuses=statuses,
        complete=not failed and stored == truth,
        conversations=stored[0], messages=stored[1], cli_cpu_s=cpu,
        fake_cpu_s=fake_cpu, postgres_cpu_s=postgres_cpu,
        machine_busy_s=busy_after - busy_before, machine_steal_s=steal_after - steal_before,
    ), left


def _worker(fake: FakeCrispProcess, url: str, work: Path, log: IO[bytes], *extra: str
            ) -> subprocess.Popen[bytes]:
    """``crisp-sync --all-websites`` on ``url`` against ``fake``, its stderr into ``log``."""
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--db", url, "--no-progress",
               "--all-websites", "--workers", str(CLI_WORKERS), *extra]
    environment = cli_environment(work)
    environment.update(CRISP_IDENTIFIER=fake.identifier, CRISP_KEY=fake.key,
                       CRISP_REST_HOST=fake.url)
    return subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=log)


def cli_environment(work: Path) -> dict[str, str]:
    """The CLI's environment: ours, without what would change its behaviour (a shared Redis, a
    default database), and with its compiled bytecode cached under ``work`` (as an installed
    package has it; this tree's own ``__pycache__`` is left alone)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("CRISP_REDIS_URL", "CRISP_SYNC_DB", "CRISP_TIER",
                                  "PYTHONDONTWRITEBYTECODE")}
    environment["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return environment


def warm_bytecode(work: Path) -> None:
    """Compile the CLI's modules into the cache of `cli_environment` once, before timing."""
    subprocess.run(
        [sys.executable, "-c", "import crisp_api.sync.cli, crisp_api.sync.postgres_store"],
        env=cli_environment(work), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        check=True, timeout=120,
    )


def _reap(
    children: Sequence[subprocess.Popen[bytes]], deadline: float
) -> tuple[list[int | None], list[float]]:
    """Wait for every child (``wait4``, for its CPU time); exit statuses (None: killed at the
    deadline) and CPU seconds, in the children's order."""
    statuses: dict[int, int | None] = {}
    cpu: dict[int, float] = {}
    while len(statuses) < len(children):
        for child in children:
            if child.pid in statuses:
                continue
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                statuses[child.pid] = child.returncode
                cpu[child.pid] = usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            for child in children:
                if child.pid not in statuses:
                    child.kill()
                    _, _, usage = os.wait4(child.pid, 0)
                    child.returncode = -signal.SIGKILL
                    statuses[child.pid] = None
                    cpu[child.pid] = usage.ru_utime + usage.ru_stime
        time.sleep(REAP_POLL_S)
    return [statuses[c.pid] for c in children], [cpu[c.pid] for c in children]


def _truth_counts(fake: FakeCrispProcess) -> tuple[int, int]:
    """The fake's conversations and messages, over every website."""
    conversations = messages = 0
    for website_id in fake.website_ids:
        for truth in fake.ground_truth(website_id=website_id).values():
            conversations += 1
            messages += len(truth.messages)
    return conversations, messages


# 3. Takeover ------------------------------------------------------------------------------


def take_over(config: Config, databases: Databases, work: Path) -> Takeover:
    """Two workers with ``--lease-ttl``; A killed mid-website; kill to B's start of it."""
    ttl, latency = config.fleet_lease_ttl, config.fleet_latency_ms
    logs = [work / "takeover-a.log", work / "takeover-b.log"]

    def result(website: str = "", seconds: float = float("nan"), free: float = float("nan"),
               status: int | None = None, complete: bool = False, note: str = "") -> Takeover:
        return Takeover(ttl_s=ttl, latency_ms=latency,
                        conversations=config.takeover_conversations, website_id=website,
                        seconds=seconds, b_free_s=free, b_status=status, complete=complete,
                        note=note)

    with FakeCrispProcess(
        websites=TAKEOVER_WEBSITES, conversations=config.takeover_conversations, messages=3,
        seed=TAKEOVER_SEED, rtm=False, faults=Faults(latency_ms=latency),
    ) as fake, databases.database() as url:
        truth = _truth_counts(fake)
        handles = [path.open("wb") for path in logs]
        extra = ("-v", "--log-format", "json", "--lease-ttl", f"{ttl:g}")
        workers = [_worker(fake, url, work, handle, *extra) for handle in handles]
        try:
            deadline = time.monotonic() + 120
            while True:  # A holds a website it has not finished, and B has begun too
                open_a = [website for website, _, end in syncs(logs[0]) if end is None]
                if open_a and syncs(logs[1]):
                    break
                if workers[0].poll() is not None or time.monotonic() > deadline:
                    return result(note="worker A never held a website while B ran")
                time.sleep(LOG_POLL_S)
            website = open_a[0]
            workers[0].send_signal(signal.SIGKILL)
            killed = datetime.now(UTC)
            workers[0].wait()
            deadline = time.monotonic() + ttl + 120
            taken: datetime | None = None
            while taken is None:
                taken = next((start for name, start, _ in syncs(logs[1])
                              if name == website and start >= killed), None)
                if taken is None and (workers[1].poll() is not None
                                      or time.monotonic() > deadline):
                    return result(website, note="worker B never started A's website")
                time.sleep(LOG_POLL_S)
            try:
                status: int | None = workers[1].wait(timeout=300)
            except subprocess.TimeoutExpired:
                status = None
            ends = [end for name, _, end in syncs(logs[1])
                    if end is not None and end <= taken and name != website]
            free = (max(ends) - killed).total_seconds() if ends else float("nan")
            return result(website, (taken - killed).total_seconds(), free, status,
                          status == 0 and databases.count(url) == truth)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                worker.wait()
            for handle in handles:
                handle.close()


def syncs(log: Path) -> list[tuple[str, datetime, datetime | None]]:
    """Each website sync a worker's JSON log shows: website, start, end (None: not ended)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    begun: dict[str, datetime] = {}
    done: list[tuple[str, datetime, datetime | None]] = []
    for line in text.splitlines():
        if not line.startswith("{") or not line.endswith("}"):
            continue  # not JSON, or a line still being written
        try:
            entry = json.loads(line)
            event, website, at = entry["event"], entry["website_id"], entry["timestamp"]
        except (ValueError, KeyError, TypeError):
            continue
        if event == STARTED:
            begun[website] = datetime.fromisoformat(at)
        elif event == ENDED and website in begun:
            done.append((website, begun.pop(website), datetime.fromisoformat(at)))
    return done + [(website, start, None) for website, start in begun.items()]


# PostgreSQL ------------------------------------------------------------------------------


class Databases:
    """Where the section's databases are made: a fresh one per run through a maintenance
    connection (``maintenance``: a database of that server we may connect to), dropped after.
    ``postmaster`` is the server's process id when it is this section's own (for its CPU)."""

    def __init__(self, maintenance: str, description: str, postmaster: int | None) -> None:
        self.maintenance = maintenance
        self.description = description
        self.postmaster = postmaster

    def create(self) -> str:
        """A new empty database; its URL."""
        from psycopg import sql  # noqa: PLC0415 - optional extra

        name = f"crisp_bench_{secrets.token_hex(5)}"
        with self._connect(self.maintenance) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.maintenance, name)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, closing the connections still on it."""
        from psycopg import sql  # noqa: PLC0415 - optional extra

        name = urlsplit(url).path.lstrip("/")
        with self._connect(self.maintenance) as db:
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                       .format(sql.Identifier(name)))

    def database(self) -> AbstractContextManager[str]:
        """A new database for the block, dropped after it."""
        return self._database()

    @contextmanager
    def _database(self) -> Iterator[str]:
        url = self.create()
        try:
            yield url
        finally:
            self.drop(url)

    def count(self, url: str) -> tuple[int, int]:
        """The conversations and messages stored in the database of ``url`` (none when the
        workers did not get as far as creating the tables)."""
        import psycopg  # noqa: PLC0415 - optional extra

        try:
            with self._connect(url) as db:
                row = db.execute("SELECT (SELECT count(*) FROM conversations), "
                                 "(SELECT count(*) FROM messages)").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def allowance(self, url: str) -> list[dict[str, Any]]:
        """The rows of the ``allowance`` table in the database of ``url`` (what the workers
        kept of the credential: learnt rate, the rate reached without a refusal...)."""
        import psycopg  # noqa: PLC0415 - optional extra
        from psycopg.rows import dict_row  # noqa: PLC0415

        try:
            with self._connect(url) as db:
                return list(db.cursor(row_factory=dict_row).execute("SELECT * FROM allowance"))
        except psycopg.errors.UndefinedTable:
            return []

    def seed_allowance(self, url: str, rows: list[dict[str, Any]]) -> None:
        """Create the store's schema in the database of ``url`` and put ``rows`` (from
        `allowance`) in its ``allowance`` table, as a run of the credential would have."""
        from psycopg import sql  # noqa: PLC0415 - optional extra

        from crisp_api.sync.postgres_database import PgDatabase  # noqa: PLC0415

        PgDatabase(url, pool_size=1, connect_timeout=10).close()
        with self._connect(url) as db:
            for row in rows:
                db.execute(sql.SQL("INSERT INTO allowance ({}) VALUES ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, row)),
                    sql.SQL(", ").join(sql.Placeholder() * len(row))), list(row.values()))

    def cpu_seconds(self) -> float:
        """The server's CPU so far (its processes, live and reaped); NaN if not ours."""
        if self.postmaster is None:
            return float("nan")
        return _process_cpu(self.postmaster, reaped=True) + sum(
            _process_cpu(pid) for pid in _children(self.postmaster))

    @staticmethod
    def _connect(url: str) -> Any:
        import psycopg  # noqa: PLC0415 - optional extra

        return psycopg.connect(url, autocommit=True, connect_timeout=10)


@contextmanager
def postgres(url: str | None) -> Iterator[Databases | str]:
    """The server of ``url``, else a private one for the block; a string saying why when
    there is none."""
    if url is not None:
        yield _external(url)
        return
    try:
        from tests.postgres_server import PostgresServer  # noqa: PLC0415 - test helper
    except ImportError as exc:
        yield f"no private PostgreSQL server: {exc}"
        return
    server: PostgresServer | None = None
    reason = ""
    try:
        server = PostgresServer()
        server.start()
    except BaseException as exc:  # pytest's Skipped (no binaries or psycopg) is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        if server is not None:
            server.stop()
        reason = f"no private PostgreSQL server: {getattr(exc, 'msg', None) or exc}"
    if server is None or reason:
        yield reason
        return
    try:
        yield _describe(server.url, "a private server started for the section, fsync off",
                        local=True)
    finally:
        server.stop()


def _external(url: str) -> Databases | str:
    try:
        return _describe(url, "--postgres-url", local=False)
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    except Exception as exc:  # psycopg.Error: unreachable, refused, ...
        return f"cannot use --postgres-url {redact(url)}: {' '.join(str(exc).split())}"


def _describe(url: str, kind: str, *, local: bool) -> Databases | str:
    import psycopg  # noqa: PLC0415 - optional extra

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as db:
            row = db.execute("SELECT current_setting('server_version'), "
                             "pg_backend_pid()").fetchone()
    except psycopg.Error as exc:
        return f"cannot connect to PostgreSQL {redact(url)}: {' '.join(str(exc).split())}"
    assert row is not None
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    postmaster = _parent(int(row[1])) if local else None
    return Databases(url, f"PostgreSQL {row[0]} at {where} ({kind})", postmaster)


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead of its own."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def redact(url: str) -> str:
    """``url`` without its password, for reports and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


# CPU accounting --------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (empty if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.rsplit(")", 1)[1].split()


def _process_cpu(pid: int, *, reaped: bool = False) -> float:
    """User and system seconds of a process; ``reaped``: with its reaped children's."""
    fields = _stat(pid)
    if len(fields) < 15:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else None


def _children(parent: int) -> list[int]:
    """The live processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == parent:
            found.append(int(entry.name))
    return found


def _machine_cpu() -> tuple[float, float]:
    """Busy (user, nice, system, irq, softirq) and stolen seconds of every CPU, from
    ``/proc/stat``; NaN where it cannot be read."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / TICKS, steal / TICKS


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
