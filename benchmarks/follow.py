"""Section 5: follow mode (``crisp-sync --follow``), the three goals of issue 13.

Each measurement runs the real CLI as a child process against a fake Crisp in another process
(REST and a Socket.IO RTM server), as an operator would:

* **Event-to-store latency.** This process adds messages through the fake's admin helpers at
  a steady rate (a few per 20 ms tick), and polls the CLI's SQLite database (read-only) every
  ~10 ms: each message's latency is from its add call returning to its first sight in the
  database.
* **Socket kills.** The fake drops the CLI's socket every few seconds while messages keep
  coming; then, after two reconciliations, the CLI is stopped with SIGTERM and its database
  compared with the fake's ground truth (conversations and messages, exactly).
* **A quiet day's cost.** The CLI follows a website where nothing happens: the requests the
  fake receives during the quiet period are compared with those of one incremental
  `sync_website` run on an unchanged website, and a day's worth is extrapolated (and compared
  with a full rescan's).
* **The cost of repairs.** Live events are hints (`crisp_api.sync.recheck`): each conversation
  an event touched is read again through REST by the next reconciliation. The CLI follows a
  website while conversations are touched in four ways, one kind at a time (a new message, an
  edit of a message far back, the removal of an older message, a change of state); after two
  reconciliations per kind, the requests spent re-reading them (``recheck_calls`` of the JSON
  log's ``reconciliation.complete`` lines) are divided by the conversations touched, and the
  copy is compared with the fake's ground truth.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.config import Config
from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.testing import FakeCrispProcess

TICK_S = 0.02
"""The adder's tick: it adds the messages of one tick in one call."""
POLL_S = 0.01
"""How often the database is read for new messages."""
TAG = "follow-bench-"
"""The prefix of every message content the latency run adds."""
CONNECT_TIMEOUT_S = 60.0
DAY_S = 86_400.0


@dataclass
class LatencyRun:
    """Event-to-store latency of messages added at ``rate`` per second for ``seconds``."""

    conversations: int
    rate: float
    seconds: float
    sent: int
    seen: int
    median_s: float
    p95_s: float
    max_s: float


@dataclass
class DropsRun:
    """Sockets dropped every ``every_s`` while messages come; then an exact copy or not."""

    seconds: float
    every_s: float
    interval_s: float
    drops: int
    sent: int
    reconciliations: int
    exit_status: int | None
    exact: bool
    conversations_missing: int
    messages_missing: int
    messages_different: int


@dataclass
class QuietRun:
    """The requests of a CLI following a website with no changes."""

    seconds: float
    interval_s: float
    requests: int
    reconciliations: int
    incremental_requests: int
    full_requests: int

    @property
    def per_reconciliation(self) -> float:
        """Requests per reconciliation observed during the quiet period."""
        return self.requests / self.reconciliations if self.reconciliations else float("nan")

    @property
    def day_requests(self) -> float:
        """A quiet day's requests: 86400 / interval reconciliations at the observed cost."""
        return DAY_S / self.interval_s * self.per_reconciliation

    @property
    def day_rescans(self) -> float:
        """A day of full rescans at the same interval, for comparison."""
        return DAY_S / self.interval_s * self.full_requests


@dataclass
class RepairKind:
    """What re-reading conversations touched in one way cost."""

    kind: str
    touched: int
    """Conversations touched (one event each)."""
    reconciliations: int
    rechecked: int
    """Touched conversations read again through REST."""
    covered: int
    """Touched conversations the reconciliation's own sync had read far enough."""
    recheck_requests: int
    """Requests spent reading them again."""
    requests: int
    """Every request of the fake's REST API during those reconciliations."""

    @property
    def per_touched(self) -> float:
        """Repair requests per touched conversation."""
        return self.recheck_requests / self.touched if self.touched else float("nan")


@dataclass
class RepairRun:
    """Repairs of conversations touched by live events, by kind of touch; then an exact copy
    or not."""

    interval_s: float
    kinds: list[RepairKind]
    exit_status: int | None
    exact: bool

    @property
    def per_touched(self) -> float:
        """Repair requests per touched conversation, over every kind."""
        touched = sum(kind.touched for kind in self.kinds)
        requests = sum(kind.recheck_requests for kind in self.kinds)
        return requests / touched if touched else float("nan")


@dataclass
class FollowResult:
    """The four measurements."""

    latency: LatencyRun
    drops: DropsRun
    quiet: QuietRun
    repair: RepairRun


def run(config: Config) -> FollowResult:
    """All four, each with its own fake and CLI."""
    return FollowResult(latency=latency(config), drops=drops(config), quiet=quiet(config),
                        repair=repair(config))


def latency(config: Config) -> LatencyRun:
    """Messages at ``config.follow_rate``/s for ``config.follow_seconds``: add-to-stored."""
    per_tick = max(1, round(config.follow_rate * TICK_S))
    returned: dict[tuple[str, int], float] = {}
    seen: dict[tuple[str, int], float] = {}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory() as tmp, FakeCrispProcess(
        conversations=config.follow_conversations, messages=3, seed=13
    ) as fake, following(fake, Path(tmp) / "latency.sqlite3", "1h") as cli:
        sessions = list(fake.ground_truth())
        done = threading.Event()

        def add() -> None:
            started = time.monotonic()
            tick = 0
            while time.monotonic() - started < config.follow_seconds:
                session = sessions[tick % len(sessions)]
                added = fake.add_messages(session, per_tick, content=f"{TAG}{tick}")
                now = time.monotonic()
                with lock:
                    for message in added:
                        returned[(session, int(message["fingerprint"]))] = now
                tick += 1
                time.sleep(max(0.0, started + tick * TICK_S - time.monotonic()))
            done.set()

        adder = threading.Thread(target=add, name="follow-bench-adder", daemon=True)
        adder.start()
        reader = sqlite3.connect(f"file:{cli.db}?mode=ro", uri=True, timeout=5)
        try:
            deadline: float | None = None
            while True:
                rows = reader.execute(
                    "SELECT session_id, fingerprint FROM messages "
                    "WHERE json_extract(data, '$.content') LIKE ?", (TAG + "%",)
                ).fetchall()
                now = time.monotonic()
                for session_id, fingerprint in rows:
                    seen.setdefault((session_id, int(fingerprint)), now)
                if done.is_set():
                    deadline = deadline or now + 10.0
                    with lock:
                        if returned.keys() <= seen.keys() or now > deadline:
                            break
                time.sleep(POLL_S)
        finally:
            reader.close()
        adder.join()
    with lock:
        delays = sorted(max(0.0, seen[key] - at) for key, at in returned.items() if key in seen)
    return LatencyRun(
        conversations=config.follow_conversations, rate=per_tick / TICK_S,
        seconds=config.follow_seconds, sent=len(returned), seen=len(delays),
        median_s=statistics.median(delays) if delays else float("nan"),
        p95_s=delays[min(len(delays) - 1, int(0.95 * len(delays)))] if delays else float("nan"),
        max_s=delays[-1] if delays else float("nan"),
    )


def drops(config: Config) -> DropsRun:
    """``drop_sockets`` every ``config.drop_every`` s while messages come at
    ``config.drop_rate``/s; two reconciliations; SIGTERM; compare with the ground truth."""
    interval = config.drop_interval
    with tempfile.TemporaryDirectory() as tmp, FakeCrispProcess(
        conversations=config.follow_conversations, messages=3, seed=14
    ) as fake:
        db = Path(tmp) / "drops.sqlite3"
        with following(fake, db, str(interval)) as cli:
            sessions = list(fake.ground_truth())
            sent = dropped = 0
            started = time.monotonic()
            next_drop = started + config.drop_every
            step = 1.0 / config.drop_rate
            while time.monotonic() - started < config.drop_seconds:
                if time.monotonic() >= next_drop:
                    fake.drop_sockets()
                    dropped += 1
                    next_drop += config.drop_every
                sent += len(fake.add_messages(sessions[sent % len(sessions)], 1))
                time.sleep(max(0.0, started + sent * step - time.monotonic()))
            before = cli.reconciliations()
            wait_until = time.monotonic() + 3 * interval + 60
            while cli.reconciliations() < before + 2 and time.monotonic() < wait_until:
                time.sleep(0.1)
            reconciliations = cli.reconciliations() - before
            status = cli.stop()
        conversations, messages = stored(db, fake.website_id)
        truth = fake.ground_truth()
    expected_conversations = {sid: t.conversation for sid, t in truth.items()}
    expected = {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}
    return DropsRun(
        seconds=config.drop_seconds, every_s=config.drop_every, interval_s=interval,
        drops=dropped, sent=sent, reconciliations=reconciliations, exit_status=status,
        exact=conversations == expected_conversations and messages == expected,
        conversations_missing=len(expected_conversations.keys() - conversations.keys()),
        messages_missing=len(expected.keys() - messages.keys()),
        messages_different=sum(1 for key, value in expected.items()
                               if key in messages and messages[key] != value),
    )


def quiet(config: Config) -> QuietRun:
    """A CLI following an unchanged website for ``config.quiet_seconds``, against one full and
    one incremental `sync_website` run measured directly on a database of their own."""
    interval = config.quiet_interval
    with tempfile.TemporaryDirectory() as tmp, FakeCrispProcess(
        conversations=config.follow_conversations, messages=3, seed=15
    ) as fake:
        with SQLiteStore(Path(tmp) / "direct.sqlite3") as store, \
                fake.client(cache_ttl=0) as client:
            fake.reset_stats()
            sync_website(client, fake.website_id, store)
            full = fake.stats.requests
            fake.reset_stats()
            sync_website(client, fake.website_id, store)
            incremental = fake.stats.requests
        with following(fake, Path(tmp) / "quiet.sqlite3", str(interval)) as cli:
            # Start half an interval in, so that neither end of the window cuts a run.
            time.sleep(interval / 2)
            before = cli.reconciliations()
            fake.reset_stats()
            time.sleep(config.quiet_seconds)
            requests = fake.stats.requests
            reconciliations = cli.reconciliations() - before
            cli.stop()
    return QuietRun(seconds=config.quiet_seconds, interval_s=interval, requests=requests,
                    reconciliations=reconciliations, incremental_requests=incremental,
                    full_requests=full)


EDITED_BACK = 65
"""How far back (in messages) the edited message is: past the newest page of 50."""
REMOVED_BACK = 30
"""How far back the removed message is: inside the newest page."""
REPAIR_KINDS = ("new message", "old message edited", "message removed", "state changed")


def repair(config: Config) -> RepairRun:
    """``config.repair_touched`` conversations touched per kind of `REPAIR_KINDS` while the
    CLI reconciles every ``config.repair_interval`` s; two reconciliations per kind; SIGTERM;
    compare with the ground truth."""
    interval = config.repair_interval
    count = config.repair_touched
    with tempfile.TemporaryDirectory() as tmp, FakeCrispProcess(
        conversations=count * len(REPAIR_KINDS), messages=3, seed=16
    ) as fake, fake.client(cache_ttl=0) as client:
        sessions = list(fake.ground_truth())
        for session in sessions:  # more than a page of messages, copied by the first sync
            fake.add_messages(session, EDITED_BACK + 5)
        db = Path(tmp) / "repair.sqlite3"
        kinds = []
        with following(fake, db, str(interval)) as cli:
            truth = fake.ground_truth()
            for number, kind in enumerate(REPAIR_KINDS):
                chosen = sessions[number * count:(number + 1) * count]
                before = len(cli.reconciled())
                fake.reset_stats()
                touching = sum(_touch(fake, client, kind, session, truth[session])
                               for session in chosen)
                wait_until = time.monotonic() + 3 * interval + 60
                while len(cli.reconciled()) < before + 2 and time.monotonic() < wait_until:
                    time.sleep(0.05)
                requests = fake.stats.requests
                lines = cli.reconciled()[before:]
                kinds.append(RepairKind(
                    kind=kind, touched=len(chosen), reconciliations=len(lines),
                    rechecked=sum(line.get("rechecked", 0) for line in lines),
                    covered=sum(line.get("covered", 0) for line in lines),
                    recheck_requests=sum(line.get("recheck_calls", 0) for line in lines),
                    requests=requests - touching,
                ))
            status = cli.stop()
        conversations, messages = stored(db, fake.website_id)
        truth = fake.ground_truth()
    expected_conversations = {sid: t.conversation for sid, t in truth.items()}
    expected = {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}
    return RepairRun(interval_s=interval, kinds=kinds, exit_status=status,
                     exact=conversations == expected_conversations and messages == expected)


def _touch(fake: FakeCrispProcess, client: Any, kind: str, session: str, truth: Any) -> int:
    """Touch ``session`` in the way ``kind`` names (the fake announces it over RTM); the
    requests to the fake's REST API this took (not the CLI's, so not counted as its)."""
    messages = truth.messages
    if kind == "new message":
        fake.add_messages(session, 1, content="repair-bench")
    elif kind == "old message edited":
        fake.edit_message(session, messages[-EDITED_BACK]["fingerprint"], "an edit far back")
    elif kind == "message removed":
        fake.remove_message(session, messages[-REMOVED_BACK]["fingerprint"])
    else:
        state = "pending" if truth.conversation.get("state") == "resolved" else "resolved"
        client.website.change_conversation_state(fake.website_id, session, {"state": state})
        return 1
    return 0


class Following:
    """A running ``crisp-sync --follow``: its database, its log, and how to stop it."""

    def __init__(self, child: subprocess.Popen[bytes], db: Path, log: Path) -> None:
        self.child = child
        self.db = db
        self.log = log

    def reconciliations(self) -> int:
        """Complete reconciliations so far, counted in its (JSON) log."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return text.count('"reconciliation.complete"')

    def reconciled(self) -> list[dict[str, Any]]:
        """The ``reconciliation.complete`` lines of its (JSON) log so far, in order."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines()
                if _COMPLETE.search(line) and line.endswith("}")]

    def stop(self) -> int | None:
        """SIGTERM; its exit status (None if it had to be killed after 30 s)."""
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        try:
            return self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
            return None


@contextmanager
def following(fake: FakeCrispProcess, db: Path, interval: str) -> Iterator[Following]:
    """``crisp-sync --follow`` against ``fake``, once its socket is connected."""
    port = _free_port()
    log = db.with_suffix(".log")
    command = [
        sys.executable, "-m", "crisp_api.sync.cli", "--db", str(db), "--no-progress",
        "--website-id", fake.website_id, "--follow", "--interval", interval,
        "--metrics-port", str(port), "--bind", "127.0.0.1",
        "--log-level", "info", "--log-format", "json",
    ]
    env = {**_environment(), "CRISP_IDENTIFIER": fake.identifier, "CRISP_KEY": fake.key,
           "CRISP_REST_HOST": fake.url}
    with log.open("wb") as sink:
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=sink)
    cli = Following(child, db, log)
    try:
        started = time.monotonic()
        while "crisp_socket_connected 1.0" not in _metrics(port):
            if child.poll() is not None or time.monotonic() - started > CONNECT_TIMEOUT_S:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"crisp-sync --follow did not connect: {tail}")
            time.sleep(0.02)
        yield cli
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def stored(db: Path, website_id: str) -> tuple[dict[str, Any], dict[tuple[str, int], Any]]:
    """The conversations (by session id) and messages (by session id and fingerprint)."""
    reader = sqlite3.connect(db)
    try:
        conversations = {
            row[0]: json.loads(row[1]) for row in reader.execute(
                "SELECT session_id, data FROM conversations WHERE website_id = ?", (website_id,))
        }
        messages = {
            (row[0], row[1]): json.loads(row[2]) for row in reader.execute(
                "SELECT session_id, fingerprint, data FROM messages WHERE website_id = ?",
                (website_id,))
        }
    finally:
        reader.close()
    return conversations, messages


_COMPLETE = re.compile(r'"event": ?"reconciliation\.complete"')


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "CRISP_REDIS_URL"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""
