"""Reading a sync database back and comparing it with the fake's ground truth."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crisp_api import Crisp
from crisp_api.testing import FakeCrisp

MessageKey = tuple[str, int]


def stored(path: Path, website_id: str) -> tuple[dict[str, Any], dict[MessageKey, Any]]:
    """The conversations (by session id) and messages (by session id and fingerprint)."""
    db = sqlite3.connect(path)
    try:
        conversations = {
            row[0]: json.loads(row[1])
            for row in db.execute(
                "SELECT session_id, data FROM conversations WHERE website_id = ?", (website_id,)
            )
        }
        messages = {
            (row[0], row[1]): json.loads(row[2])
            for row in db.execute(
                "SELECT session_id, fingerprint, data FROM messages WHERE website_id = ?",
                (website_id,),
            )
        }
    finally:
        db.close()
    return conversations, messages


def assert_exact_copy(path: Path, fake: FakeCrisp, website_id: str | None = None) -> None:
    """The database holds exactly the fake's conversations and messages, byte for byte."""
    website = website_id or fake.website_id
    conversations, messages = stored(path, website)
    truth = fake.ground_truth(website_id=website)
    assert conversations == {sid: t.conversation for sid, t in truth.items()}
    expected = {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}
    assert messages.keys() == expected.keys()
    assert messages == expected


def checkpoint(path: Path, website_id: str) -> int | None:
    """The stored checkpoint, read without the store (no lock, no migration)."""
    db = sqlite3.connect(path)
    try:
        row = db.execute(
            "SELECT checkpoint_ms FROM sync_state WHERE website_id = ?", (website_id,)
        ).fetchone()
    finally:
        db.close()
    return None if row is None else row[0]


def fast_client(fake: FakeCrisp) -> Crisp:
    """A client of the fake without a response cache."""
    return fake.client(cache_ttl=0)


def sync_command(fake: FakeCrisp, db: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    """``crisp-sync`` against the fake, as a child process, and its environment."""
    env = {
        **os.environ,
        "CRISP_IDENTIFIER": fake.identifier,
        "CRISP_KEY": fake.key,
        "CRISP_REST_HOST": fake.url,
    }
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--db", str(db), "--no-progress"]
    return [*command, *extra], env


def wait_for(check: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``check`` until it is true; the seconds it took (fails the test after
    ``timeout``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


Spawn = Callable[..., "subprocess.Popen[str]"]
"""Starts a Python child running a script (with arguments), once it printed its ready line."""


@contextmanager
def ready_children(ready: str) -> Iterator[Spawn]:
    """A `Spawn` of Python children that print ``ready`` once set up (holding a lock, a
    lease); every child is killed when the block ends."""
    children: list[subprocess.Popen[str]] = []

    def start(script: str, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
        )
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline() == ready + "\n"
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill()
            child.wait()
            assert child.stdout is not None
            child.stdout.close()
