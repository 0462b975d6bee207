"""Locks on websites in SQLite: one run at a time per website, across every program using
the file (the SQLite store's ``lock``; PostgreSQL's counterpart is `postgres_leases`).

A lock is a row of ``sync_locks``: the holder's host, pid and a token (the process's start
time and a random part), and a heartbeat. A holder on this host is live while its process is
(same pid and start time, read from ``/proc``, so a reused pid is told apart); on another
host, while it refreshes its heartbeat (every `HEARTBEAT_SECONDS`, from a daemon thread)
within `LOCK_EXPIRY_SECONDS`. A run that died (killed, machine lost) does not keep its
website locked: the next run takes the row over.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from crisp_api.sync.sqlite_database import SqliteDatabase
from crisp_api.sync.store import StoreError, WebsiteLockedError

LOCK_EXPIRY_SECONDS = 120.0
"""A lock taken on another host is dead once its heartbeat is older than this."""
HEARTBEAT_SECONDS = 30.0
"""How often a held lock refreshes its heartbeat (well within `LOCK_EXPIRY_SECONDS`)."""

_held_tokens: set[str] = set()
"""Tokens of the website locks this process holds, to tell them from ones it failed to free."""

logger = logging.getLogger(__name__)


class SqliteLocks:
    """The website locks of one SQLite database; safe to use from threads."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @contextmanager
    def hold(self, website_id: str) -> Iterator[None]:
        """Hold ``website_id`` for one run; `WebsiteLockedError` if a live run holds it (a
        second run in this process too, even through the same store)."""
        token = self._acquire(website_id)
        stop = threading.Event()
        beating = threading.Thread(
            target=self._keep_alive,
            args=(website_id, token, stop),
            name=f"crisp-sync lock {website_id}",
            daemon=True,
        )
        beating.start()
        try:
            yield
        finally:
            stop.set()
            beating.join()
            self._release(website_id, token)

    def _acquire(self, website_id: str) -> str:
        """Take the website's lock row, unless a live run holds it; the row's token."""
        token = f"{_start_time(os.getpid())}:{secrets.token_hex(8)}"
        now = _now_ms()
        _held_tokens.add(token)  # before the commit, so no other store here sees it as stale
        try:
            with self._db.transaction("lock") as db:
                held = db.execute(
                    "SELECT host, pid, token, heartbeat_ms, acquired_ms FROM sync_locks "
                    "WHERE website_id = ?",
                    (website_id,),
                ).fetchone()
                if held is not None:
                    host, pid, held_token, heartbeat_ms, acquired_ms = held
                    if _is_live(host, pid, held_token, heartbeat_ms, now=now):
                        raise WebsiteLockedError(website_id, _holder(host, pid, acquired_ms))
                db.execute(
                    "INSERT OR REPLACE INTO sync_locks "
                    "(website_id, host, pid, token, heartbeat_ms, acquired_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (website_id, socket.gethostname(), os.getpid(), token, now, now),
                )
        except BaseException:
            _held_tokens.discard(token)
            raise
        return token

    def _keep_alive(self, website_id: str, token: str, stop: threading.Event) -> None:
        """Refresh the lock's heartbeat until ``stop``; a failed beat is logged and retried."""
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._db.transaction("lock heartbeat") as db:
                    db.execute(
                        "UPDATE sync_locks SET heartbeat_ms = ? WHERE website_id = ? AND token = ?",
                        (_now_ms(), website_id, token),
                    )
            except StoreError as exc:
                logger.warning("cannot refresh the lock of website %s: %s", website_id, exc)

    def _release(self, website_id: str, token: str) -> None:
        """Delete the lock row if it is still ours (another run may have taken it over)."""
        try:
            with self._db.transaction("unlock") as db:
                db.execute(
                    "DELETE FROM sync_locks WHERE website_id = ? AND token = ?",
                    (website_id, token),
                )
        finally:
            _held_tokens.discard(token)


def _is_live(host: str, pid: int, token: str, heartbeat_ms: int, *, now: int) -> bool:
    """Whether the run that wrote this lock row still holds it (see the module docstring)."""
    if host != socket.gethostname() or os.name != "posix":  # no safe pid probe on Windows
        return now - heartbeat_ms < LOCK_EXPIRY_SECONDS * 1000
    if pid == os.getpid():
        return token in _held_tokens
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return _start_time(pid) == token.partition(":")[0]


def _start_time(pid: int) -> str:
    """When ``pid`` started (field 22 of ``/proc/<pid>/stat``, in clock ticks since boot),
    so a pid reused by another process is told apart; empty where there is no ``/proc``."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # Fields after the command name, which sits in parentheses and may hold spaces: the
    # first of them is field 3 (state), so field 22 is at index 19.
    return stat.rpartition(")")[2].split()[19]


def _holder(host: str, pid: int, acquired_ms: int) -> str:
    since = datetime.fromtimestamp(acquired_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"pid {pid} on host {host} since {since}"


def _now_ms() -> int:
    return int(time.time() * 1000)
