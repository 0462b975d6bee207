"""Follow mode, end to end: ``crisp-sync --follow`` in a child process against the fake Crisp
(REST and RTM over real sockets), killed with real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.testing import FakeCrisp
from crisp_api.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.sync.helpers import assert_exact_copy, fast_client, stored, sync_command, wait_for

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

SECRET = "hooks-secret"


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@contextmanager
def following(
    fake: FakeCrisp, db: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``crisp-sync --follow`` running against ``fake``, healthy, with its metrics port."""
    port = free_port()
    command, base = sync_command(
        fake, db, "--website-id", fake.website_id, "--follow", "--metrics-port", str(port),
        "--bind", "127.0.0.1", *extra,
    )
    child = subprocess.Popen(command, env={**base, **(env or {})}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "crisp_socket_connected 1.0" in get(f"http://127.0.0.1:{port}/metrics")[1]
                 or child.poll() is not None, 60, "the socket to connect")
        assert child.poll() is None, child.communicate()
        yield child, port
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def message_content(db: Path, website_id: str, session_id: str, fingerprint: int) -> Any:
    _, messages = stored(db, website_id)
    found = messages.get((session_id, fingerprint))
    return None if found is None else found.get("content")


def test_follow_mirrors_messages_edits_removals_and_states_live_then_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live.sqlite3"
    with FakeCrisp(conversations=10, messages=3, seed=3) as fake, following(
        fake, db, "--interval", "1h"  # no reconciliation: only events can do it
    ) as (child, port):
        session = next(iter(fake.ground_truth()))
        new = fake.add_messages(session, 1, content="live hello")[0]
        took = wait_for(
            lambda: message_content(db, fake.website_id, session, new["fingerprint"])
            == "live hello", 5, "a new message")
        fake.edit_message(session, new["fingerprint"], "live edit")
        wait_for(lambda: message_content(db, fake.website_id, session, new["fingerprint"])
                 == "live edit", 5, "an edit")
        old = fake.messages(session)[0]["fingerprint"]  # an old message: polling cannot see it
        fake.remove_message(session, old)
        wait_for(lambda: message_content(db, fake.website_id, session, old) is None, 5,
                 "a removal")
        with fast_client(fake) as client:
            client.website.change_conversation_state(
                fake.website_id, session, {"state": "unresolved"}
            )
        wait_for(lambda: stored(db, fake.website_id)[0][session].get("state") == "unresolved",
                 5, "a state change")

        health = get(f"http://127.0.0.1:{port}/healthz")
        assert health[0] == 200
        assert json.loads(health[1])["healthy"]
        metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
        assert 'crisp_events_applied_total{event="message:send"}' in metrics
        assert "crisp_requests_total" in metrics

        child.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert child.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    print(f"\nfollow: first event stored {took:.3f} s after the change")


def test_dropped_sockets_and_missed_events_end_in_an_exact_copy(tmp_path: Path) -> None:
    db = tmp_path / "drops.sqlite3"
    with FakeCrisp(conversations=20, messages=3, seed=4) as fake, following(
        fake, db, "--interval", "2"
    ) as (child, _):
        sessions = list(fake.ground_truth())
        for round_number in range(6):
            fake.drop_sockets()
            for session in sessions[round_number::6]:
                fake.add_messages(session, 2)  # some land while the socket is down
            time.sleep(0.5)
        fake.touch_conversations(3)
        time.sleep(5)  # two reconciliations at least
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
        assert_exact_copy(db, fake)


def test_an_event_stored_message_does_not_hide_older_ones_from_the_reconciliation(
    tmp_path: Path,
) -> None:
    """m1 is sent while the socket is down (its event lost), m2 after (stored from its event):
    the reconciliation must still walk back to m1, not stop at the newest stored message."""
    db = tmp_path / "hidden.sqlite3"
    with FakeCrisp(conversations=3, messages=3, seed=5) as fake:
        with SQLiteStore(db) as store, fast_client(fake) as client:
            assert sync_website(client, fake.website_id, store).complete
            session = next(iter(fake.ground_truth()))
            missed = fake.add_messages(session, 1)[0]
            seen = fake.add_messages(session, 1)[0]
            store.save_message(fake.website_id, session, {**seen, "session_id": session,
                                                          "website_id": fake.website_id})
            assert sync_website(client, fake.website_id, store).complete
        assert message_content(db, fake.website_id, session, missed["fingerprint"]) == (
            missed["content"]
        )
        assert_exact_copy(db, fake)


def test_web_hooks_are_verified_and_applied(tmp_path: Path) -> None:
    db = tmp_path / "hooks.sqlite3"
    hooks = free_port()
    with FakeCrisp(conversations=5, messages=2, seed=6) as fake, following(
        fake, db, "--interval", "1h", "--hooks-port", str(hooks),
        env={"CRISP_HOOKS_SECRET": SECRET},
    ):
        session = next(iter(fake.ground_truth()))
        fingerprint = fake.add_messages(session, 1, content="before")[0]["fingerprint"]
        wait_for(lambda: message_content(db, fake.website_id, session, fingerprint)
                 == "before", 5, "the message")
        body = json.dumps({"event": "message:updated", "data": {
            "website_id": fake.website_id, "session_id": session,
            "fingerprint": fingerprint, "content": "from a hook"}})
        stamp = str(int(time.time() * 1000))

        def post(signature: str) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{hooks}/", data=body.encode(), method="POST",
                headers={SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp,
                         "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert post("0" * 64) == 401
        assert message_content(db, fake.website_id, session, fingerprint) != "from a hook"
        assert post(sign(SECRET, body, stamp)) == 200
        assert message_content(db, fake.website_id, session, fingerprint) == "from a hook"


def test_follow_needs_the_hooks_secret_for_a_hooks_port(tmp_path: Path) -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        command, env = sync_command(fake, tmp_path / "x.sqlite3", "--website-id",
                                    fake.website_id, "--follow", "--hooks-port", "9")
        env.pop("CRISP_HOOKS_SECRET", None)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "CRISP_HOOKS_SECRET" in done.stderr


def test_sigint_also_stops_follow_mode_cleanly(tmp_path: Path) -> None:
    with FakeCrisp(conversations=3, messages=1) as fake, following(
        fake, tmp_path / "int.sqlite3", "--interval", "1h"
    ) as (child, _):
        os.kill(child.pid, signal.SIGINT)
        assert child.wait(timeout=15) == 0


def test_database_rows_survive_in_wal_after_stop(tmp_path: Path) -> None:
    """What follow mode applied is committed: another connection reads it after the stop."""
    db = tmp_path / "wal.sqlite3"
    with FakeCrisp(conversations=3, messages=1, seed=8) as fake, following(
        fake, db, "--interval", "1h"
    ) as (child, _):
        session = next(iter(fake.ground_truth()))
        new = fake.add_messages(session, 1, content="kept")[0]
        wait_for(lambda: message_content(db, fake.website_id, session, new["fingerprint"])
                 == "kept", 5, "the message")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM messages WHERE fingerprint = ?",
                                  (new["fingerprint"],)).fetchone() == (1,)


def test_healthz_fails_while_reconciliation_keeps_failing_then_recovers(tmp_path: Path) -> None:
    with FakeCrisp(conversations=3, messages=1, seed=9) as fake, following(
        fake, tmp_path / "health.sqlite3", "--interval", "0.3", "--health-threshold", "1"
    ) as (child, port):
        url = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: get(url)[0] == 200, 10, "a healthy start")
        fake.set_faults(error_rate=1.0, error_statuses=(503,))
        wait_for(lambda: get(url)[0] == 503, 20, "/healthz to fail")
        _, body = get(url)
        assert "reconciliation has failed" in json.loads(body)["problems"][0]
        fake.set_faults()
        wait_for(lambda: get(url)[0] == 200, 20, "/healthz to recover")
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
