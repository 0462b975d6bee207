"""Events are hints, Crisp's REST answers the truth: wrong, replayed and invented events
pushed through the fake's real RTM socket into ``crisp-sync --follow`` are repaired by the
next reconciliation; events met by a PostgreSQL restart are retried, not dropped."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crisp_api.testing import FakeCrisp
from tests.sync.helpers import stored, wait_for
from tests.sync.test_follow_degraded import health, is_exact_copy, metric, serving, stop

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["crisp_api.testing.pytest_plugin", "tests.postgres_server"]


def test_wrong_replayed_and_invented_events_are_repaired_within_one_interval(
    tmp_path: Path,
) -> None:
    """Old code: every one of these was applied and stayed, whatever the reconciliations."""
    db = tmp_path / "hints.sqlite3"
    with FakeCrisp(conversations=8, messages=60, seed=24) as fake, serving(
        fake, db, "--interval", "4"
    ) as (child, port):
        wait_for(lambda: metric(port, "crisp_socket_connected") == 1.0, 30, "live events")
        website = fake.website_id
        truth = fake.ground_truth()
        long = [sid for sid, t in truth.items() if len(t.messages) > 45]  # beyond one page
        assert len(long) >= 3
        removed, edited, invented = long[:3]
        resolved = next(sid for sid in truth if sid not in long)
        oldest = {sid: truth[sid].messages[0]["fingerprint"] for sid in (removed, edited)}
        newest = truth[invented].messages[-1]
        wrong: list[tuple[str, dict[str, Any]]] = [
            # the removal of a message Crisp still has (the oldest of its conversation)
            ("message:removed", {"session_id": removed, "fingerprint": oldest[removed]}),
            # a replayed (stale) edit of a message from long ago
            ("message:updated", {"session_id": edited, "fingerprint": oldest[edited],
                                 "content": "a stale edit, replayed"}),
            # a state Crisp does not have
            ("session:set_state", {"session_id": resolved, "state": "bogus"}),
            # a message Crisp does not have, newer than anything it has
            ("message:send", {**newest, "fingerprint": 424242, "timestamp":
                              newest["timestamp"] + 60_000, "content": "invented"}),
            # a session Crisp does not have
            ("message:send", {**newest, "session_id": "session_invented", "fingerprint": 7,
                              "content": "invented too"}),
        ]
        for name, data in wrong:
            fake.push_event(name, {**data, "website_id": website})

        def applied() -> bool:
            conversations, messages = stored(db, website)
            return ((removed, oldest[removed]) not in messages
                    and messages.get((edited, oldest[edited]), {}).get("content")
                    == "a stale edit, replayed"
                    and conversations[resolved].get("state") == "bogus"
                    and (invented, 424242) in messages
                    and ("session_invented", 7) in messages)

        wait_for(applied, 3, "the wrong events to be applied")
        took = wait_for(lambda: is_exact_copy(db, fake), 15, "the next reconciliation to "
                        "repair them")
        stderr = stop(child)
    calls = [int(found) for found in re.findall(r"recheck_calls=(\d+)", stderr)]
    rechecked = [int(found) for found in re.findall(r"rechecked=(\d+)", stderr)]
    assert sum(rechecked) >= len(wrong)
    print(f"\nwrong events repaired {took:.1f} s after they were applied (interval 4 s); "
          f"{sum(calls)} requests for {sum(rechecked)} touched conversations "
          f"({sum(calls) / max(1, sum(rechecked)):.1f} each)")


def test_edits_of_older_messages_survive_a_postgresql_restart(
    postgres_server_factory: Callable[[], PostgresServer],
) -> None:
    """Old code: the edits met dead pooled connections and were dropped with a warning each;
    no reconciliation re-reads an older message, so they were lost for good; and /healthz
    never turned 503 before a reconciliation failed."""
    server = postgres_server_factory()
    url = server.create_database()
    name = url.rsplit("/", 1)[1]
    with FakeCrisp(conversations=10, messages=3, seed=25) as fake:
        older = [(session, fake.add_messages(session, 45)[0]["fingerprint"])  # a page beyond
                 for session in fake.ground_truth()]
        with serving(fake, url, "--interval", "1h", "--health-threshold", "3") as (child, port):
            wait_for(lambda: health(port)[:2] == (200, "ok"), 60, "the ok state")
            server.halt()
            halted = time.monotonic()
            for number, (session, fingerprint) in enumerate(older):
                fake.edit_message(session, fingerprint, f"edited during the outage {number}")
            wait_for(lambda: health(port)[0] == 503, 60, "/healthz to fail")
            to_failing = time.monotonic() - halted
            server.start()
            started = time.monotonic()
            wait_for(lambda: health(port)[:2] == (200, "ok"), 60, "/healthz to recover")
            to_ok = time.monotonic() - started

            def edits_stored() -> bool:
                with server.connect(name) as db:
                    contents = {(row[0], row[1]): row[2]["content"] for row in db.execute(
                        "SELECT session_id, fingerprint, data FROM messages")}
                return all(contents.get(key) == f"edited during the outage {number}"
                           for number, key in enumerate(older))

            wait_for(edits_stored, 60, "every edit to be stored")
            assert metric(port, "crisp_events_dropped_total") == 0.0
            stop(child)
    print(f"\nPostgreSQL stopped: /healthz 503 after {to_failing:.1f} s (threshold 3 s); "
          f"started: 200 after {to_ok:.1f} s; {len(older)} edits of older messages kept")
