"""Progress: what the engine reports, and the bars ``crisp-sync`` draws on a real terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

from crisp_api.sync import SQLiteStore, SyncProgress, sync_website
from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import fast_client, sync_command


def _reports(fake: FakeCrisp, store: SQLiteStore) -> list[SyncProgress]:
    seen: list[SyncProgress] = []
    lock = threading.Lock()

    def record(progress: SyncProgress) -> None:
        with lock:
            seen.append(progress)

    assert sync_website(fast_client(fake), fake.website_id, store, workers=4,
                        on_progress=record).complete
    return seen


def test_a_first_run_counts_and_an_incremental_run_knows_its_share(tmp_path: Path) -> None:
    with FakeCrisp(conversations=120, messages=3, seed=31) as fake, \
            SQLiteStore(tmp_path / "crisp.sqlite3") as store:
        first = _reports(fake, store)
        # No total on a first run: a count of every conversation, one report each, then done.
        assert [p.window for p in first] == [None] * 121
        assert sorted(p.conversations for p in first[:-1]) == list(range(1, 121))
        assert first[-1].conversations == 120

        fake.touch_conversations(30)
        time.sleep(0.05)  # the fake stamps changes a few ms ahead of our clock
        again = _reports(fake, store)
        shares = [p.window for p in again]
        assert all(share is not None and 0 <= share <= 1 for share in shares)
        known = [share for share in shares if share is not None]
        assert known == sorted(known)  # the share walked never goes back
        assert known[-1] == 1.0  # the walk reached the window's start
        assert again[-1].conversations == len(again) - 1


def test_no_report_of_a_finished_walk_when_a_run_is_stopped(tmp_path: Path) -> None:
    with FakeCrisp(conversations=60, messages=2, seed=32) as fake, \
            SQLiteStore(tmp_path / "crisp.sqlite3") as store:
        stop = threading.Event()
        seen: list[SyncProgress] = []

        def record(progress: SyncProgress) -> None:
            seen.append(progress)
            stop.set()

        report = sync_website(fast_client(fake), fake.website_id, store, workers=1,
                              on_progress=record, stop=stop)
        assert not report.complete
        assert seen
        assert seen[-1].conversations < 60
        assert len(seen) == seen[-1].conversations  # one per conversation, no "done" after


def _on_a_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Runs ``command`` with its stderr on a pseudo-terminal; its status and what it drew."""
    controller, terminal = pty.openpty()
    rows_columns = struct.pack("HHHH", 40, 120, 0, 0)  # a new one is 0 wide: tqdm draws nothing
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, rows_columns)
    drawn = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=terminal) as child:
        os.close(terminal)
        status = child.wait(timeout=180)
    reader.join(timeout=10)
    os.close(controller)
    return status, drawn.decode(errors="replace")


def _with_bars(command: list[str]) -> list[str]:
    return [part for part in command if part != "--no-progress"]


def test_bars_on_a_terminal_show_a_total_and_an_eta_where_one_is_known(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    slow = Faults(latency_ms=20)  # runs long enough for tqdm to redraw (every 0.1 s)
    with FakeCrisp(websites=3, conversations=60, messages=2, seed=33, faults=slow) as fake:
        command, env = sync_command(fake, path, "--all-websites")
        status, drawn = _on_a_terminal(_with_bars(command), env)
        assert status == 0, drawn
        # Over the websites: a total and a time left.
        assert re.search(r"websites: 100%\|[^|]*\| 3/3 \[\d\d:\d\d<00:00", drawn), drawn
        # A first run of a website: a count and a rate, no made-up total.
        assert re.search(r": [1-9]\d* conversations \[\d\d:\d\d, [\d.]+ conversations/s\]",
                         drawn), drawn

        website_id = fake.website_ids[0]
        fake.touch_conversations(20, website_id=website_id)
        time.sleep(0.05)  # the fake stamps changes a few ms ahead of our clock
        command, env = sync_command(fake, path, "--website-id", website_id)
        status, drawn = _on_a_terminal(_with_bars(command), env)
        assert status == 0, drawn
        # An incremental run: the share of its window walked, and a time left.
        assert re.search(r": 100%\|[^|]*\| \[\d\d:\d\d<00:00, 2\d conversations\]", drawn), drawn

        status, drawn = _on_a_terminal(command, env)  # --no-progress: nothing drawn
        assert status == 0
        assert "%|" not in drawn
        assert "conversations/s" not in drawn
