"""crisp-sync as an operator runs it: stopped by real signals in every phase (a database that
stopped answering included), and under ``--log-format json`` nothing but JSON on stderr.

Each test runs ``crisp-sync`` as a child process against the fake Crisp, slowed down so that
the signal comes in the middle of a first sync."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import (
    assert_exact_copy,
    checkpoint,
    ready_children,
    stored,
    sync_command,
    wait_for,
)

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

SLOW = Faults(latency_ms=40)
"""Each request takes 40 ms: a first sync of `CONVERSATIONS` lasts several seconds."""
HELD = Faults(latency_ms=400)
"""What the fake turns to once a sync has committed enough to be stopped: what is left would
take it some 40 s more, so the signal finds it midway however late a busy machine sends it
(at 40 ms a request, CI once sent it as the last conversations were being committed: the
sync then ended complete, with 0)."""
CONVERSATIONS = 400
STOP_BOUND = 10.0
"""Seconds a stopped crisp-sync may take to end (the README's unit allows 30)."""
INTERRUPTED = "; committed work is kept, rerun to finish"


def slow_fake() -> FakeCrisp:
    return FakeCrisp(conversations=CONVERSATIONS, messages=4, seed=3, faults=SLOW, rtm=False)


def stored_count(db: Path, website_id: str) -> int:
    """Conversations committed so far (0 before the schema exists)."""
    try:
        return len(stored(db, website_id)[0])
    except sqlite3.Error:
        return 0


def stop_midway(child: subprocess.Popen[str], committed: Callable[[], int], signum: int,
                fake: FakeCrisp) -> tuple[float, str]:
    """Send ``signum`` once some conversations are committed and none too many, ``fake``
    slowed down to `HELD` first; the seconds the child took to end after it, and its
    stderr."""
    wait_for(lambda: committed() >= 20 or child.poll() is not None, 60, "a first commit")
    fake.set_faults(HELD)
    assert child.poll() is None, child.communicate()
    assert committed() < CONVERSATIONS
    child.send_signal(signum)
    sent = time.monotonic()
    _, errors = child.communicate(timeout=60)
    return time.monotonic() - sent, errors


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``command`` as a child that the stop signals stop as they do by default, however this
    test run was started: ``nohup`` leaves SIGHUP ignored, a shell without job control leaves
    SIGINT ignored in its background jobs, a child inherits both, and a signal ignored when
    crisp-sync starts stays ignored (its own test below)."""
    ignored = [sig for sig in (signal.SIGHUP, signal.SIGINT)
               if signal.getsignal(sig) is signal.SIG_IGN]
    for sig in ignored:
        signal.signal(sig, signal.SIG_DFL)
    try:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    finally:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)


def json_lines(errors: str) -> list[dict[str, Any]]:
    """Every line of ``errors``, each of which must be one JSON object."""
    events = []
    for line in errors.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\n{errors}")
        assert isinstance(event, dict), line
        events.append(event)
    return events


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=lambda signum: signum.name)
def test_a_signal_during_a_first_sync_ends_it_incomplete_keeping_what_was_committed(
    tmp_path: Path, signum: signal.Signals
) -> None:
    db = tmp_path / "crisp.sqlite3"
    with slow_fake() as fake:
        command, env = sync_command(fake, db, "--website-id", fake.website_id, "--workers", "4")
        child = spawn(command, env)
        took, errors = stop_midway(child, lambda: stored_count(db, fake.website_id), signum,
                                   fake)
        assert took < STOP_BOUND
        assert child.returncode == 130, errors
        assert f"crisp-sync: interrupted by {signum.name}{INTERRUPTED}\n" in errors
        assert "Traceback" not in errors
        assert checkpoint(db, fake.website_id) is None
        conversations, _ = stored(db, fake.website_id)
        assert 20 <= len(conversations) < CONVERSATIONS
        truth = fake.ground_truth()
        assert all(conversation == truth[session_id].conversation
                   for session_id, conversation in conversations.items())

        fake.set_faults()  # the rerun the message asks for finishes the copy
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert_exact_copy(db, fake)


def test_a_signal_during_follow_modes_first_sync_stops_the_service_with_0(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crisp.sqlite3"
    with slow_fake() as fake:
        command, env = sync_command(fake, db, "--website-id", fake.website_id, "--workers", "4",
                                    "--follow")
        child = spawn(command, env)
        took, errors = stop_midway(child, lambda: stored_count(db, fake.website_id),
                                   signal.SIGTERM, fake)
    assert took < STOP_BOUND
    assert child.returncode == 0, errors
    assert errors.endswith("crisp-sync: stopped by SIGTERM\n"), errors
    assert checkpoint(db, fake.website_id) is None


def postgres_count(server: PostgresServer, url: str) -> int:
    """Conversations committed so far in ``url``'s database (0 before the schema exists)."""
    import psycopg  # noqa: PLC0415 - the plugin skips the test without it

    try:
        with server.connect(url.rsplit("/", 1)[1]) as db:
            row = db.execute("SELECT count(*) FROM conversations").fetchone()
    except psycopg.Error:
        return 0
    return 0 if row is None else int(row[0])


@pytest.mark.parametrize("mode", ["once", "follow"])
def test_a_signal_stops_within_seconds_with_postgresql_down_logging_only_json(
    tmp_path: Path, postgres_server_factory: Callable[[], PostgresServer], mode: str
) -> None:
    server = postgres_server_factory()
    url = server.create_database()
    with slow_fake() as fake:
        follow = ["--follow"] if mode == "follow" else []
        command, env = sync_command(fake, tmp_path / "unused", "--website-id", fake.website_id,
                                    "--workers", "4", "--log-format", "json", *follow)
        command[command.index("--db") + 1] = url
        child = spawn(command, env)
        wait_for(lambda: postgres_count(server, url) >= 20 or child.poll() is not None, 60,
                 "a first commit")
        assert child.poll() is None, child.communicate()
        server._stop()  # stopped, its data kept to look at after
        time.sleep(1.0)  # the pool finds its connections dead and fails to reconnect
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, errors = child.communicate(timeout=60)
        took = time.monotonic() - sent
    assert took < STOP_BOUND, errors
    events = json_lines(errors)
    assert any(e.get("logger", "").startswith("psycopg") for e in events), errors
    last = events[-1]
    if mode == "follow":
        assert child.returncode == 0, errors
        assert (last["event"], last["signal"], last["exit_status"]) == ("sync.stopped",
                                                                        "SIGTERM", 0)
    else:
        assert child.returncode == 130, errors
        assert (last["event"], last["signal"], last["exit_status"]) == ("sync.failed",
                                                                        "SIGTERM", 130)
        assert last["reason"].startswith("interrupted by SIGTERM")
    server.start()  # the test server commits asynchronously: the last commits may be lost
    assert postgres_count(server, url) > 0
    with server.connect(url.rsplit("/", 1)[1]) as db:
        assert db.execute("SELECT checkpoint_ms FROM sync_state").fetchall() in ([], [(None,)])


def test_under_json_logs_every_line_on_stderr_is_json_summary_and_failures_included(
    tmp_path: Path,
) -> None:
    with FakeCrisp(conversations=30, messages=3, seed=5, rtm=False) as fake:
        command, env = sync_command(fake, tmp_path / "crisp.sqlite3", "--website-id",
                                    fake.website_id, "--log-format", "json")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        refused = subprocess.run(command, env={**env, "CRISP_KEY": "wrong"},
                                 capture_output=True, text=True, timeout=120)
        usage = subprocess.run([*command, "--workers", "0"], env=env, capture_output=True,
                               text=True, timeout=120)
        command[command.index("--db") + 1] = "postgresql://crisp@127.0.0.1:9/nothing_here"
        no_database = subprocess.run(command, env=env, capture_output=True, text=True,
                                     timeout=120)
        messages = sum(len(truth.messages) for truth in fake.ground_truth().values())

    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    [summary] = [e for e in json_lines(done.stderr) if e["event"] == "sync.summary"]
    assert summary["complete"] is True
    assert (summary["websites"], summary["conversations_added"]) == (1, 30)
    assert summary["messages_added"] == messages
    for run, status in ((refused, 3), (usage, 2), (no_database, 1)):
        assert run.returncode == status, run.stderr
        last = json_lines(run.stderr)[-1]
        assert (last["event"], last["level"], last["exit_status"]) == ("sync.failed", "error",
                                                                        status)
        assert last["reason"]
    assert "--workers" in json_lines(usage.stderr)[-1]["reason"]


HOLDER = """
import os, sys, time
from crisp_api.sync.signals import Stop, stop_on_signals

def overdue(name):
    print("overdue", name, flush=True)
    os._exit(7)

stop = Stop()
with stop_on_signals(stop, overdue, grace=float(sys.argv[1])):
    print("ready", flush=True)
    stop.wait()
    print("stopping", stop.signal_name, flush=True)
    time.sleep(60)  # what a database that stopped answering does to a run
"""


def test_a_second_signal_ends_a_stopping_run_at_once() -> None:
    with ready_children("ready") as spawn_holder:
        child = spawn_holder(HOLDER, "60")
        child.send_signal(signal.SIGTERM)
        assert child.stdout is not None
        assert child.stdout.readline() == "stopping SIGTERM\n"
        child.send_signal(signal.SIGINT)
        assert child.wait(STOP_BOUND) == 7
        assert child.stdout.readline() == "overdue SIGTERM\n"


def test_a_run_still_busy_after_the_grace_is_ended_and_an_ignored_sighup_stays_ignored(
) -> None:
    with ready_children("ready") as spawn_holder:
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup does; inherited
        try:
            child = spawn_holder(HOLDER, "0.5")
        finally:
            signal.signal(signal.SIGHUP, previous)
        child.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        assert child.wait(STOP_BOUND) == 7
        assert child.stdout is not None
        assert child.stdout.read() == "stopping SIGTERM\noverdue SIGTERM\n"


BLOCKED = """
import os, signal, sys, threading, time
from crisp_api.sync.signals import Stop, stop_on_signals

def overdue(name):
    print("overdue", name, "stop set" if stop.is_set() else "stop unset", flush=True)
    os._exit(7)

def signal_this_thread():
    time.sleep(0.2)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

stop = Stop()
with stop_on_signals(stop, overdue, grace=0.5):
    print("ready", flush=True)
    threading.Thread(target=signal_this_thread).start()
    held = threading.Lock()
    held.acquire()
    held.acquire()  # the main thread blocked in a lock, as on a database that does not answer
"""


def test_a_signal_delivered_to_another_thread_stops_a_run_whose_main_thread_is_blocked(
) -> None:
    """The kernel may deliver a signal to any thread; a Python handler would wait for the main
    thread to run Python code again (here: never). The stop still comes, and the grace."""
    with ready_children("ready") as spawn_blocked:
        child = spawn_blocked(BLOCKED)
        assert child.wait(STOP_BOUND) == 7
        assert child.stdout is not None
        assert child.stdout.read() == "overdue SIGTERM stop set\n"
