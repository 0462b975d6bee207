"""The floor: the least program that copies a website's conversations and messages into SQLite.

urllib3, json and sqlite3 only: the conversations listed page by page (50 a page, as crisp-sync
asks), each conversation's messages read from its newest page back (``timestamp_before``, 40 a
page) by 8 threads sharing one keep-alive pool, every conversation saved with its messages in
one transaction on one SQLite connection (WAL, ``synchronous=NORMAL``, as crisp-sync's) under a
lock. No retries, no checks, no checkpoint, no rate limit: what no copy can do without. Its CPU
per message is the floor crisp-sync's is compared with (`benchmarks.sync_cpu`).

``python -m benchmarks.floor HOST IDENTIFIER KEY TIER WEBSITE_ID DATABASE`` copies and prints
``{"conversations": n, "messages": n}``; with ``--list-only`` instead of ``DATABASE`` it only
lists, and prints the listing's CPU seconds (``listing_cpu_s``: the process's, around the
listing loop) and the entries listed.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

THREADS = 8
LISTING_PAGE = 50
MESSAGES_PAGE = 40


class Copier:
    """The copy's HTTP side: GET a path of the API, the answer's ``data``."""

    def __init__(self, host: str, identifier: str, key: str, tier: str, website_id: str) -> None:
        self.pool = urllib3.PoolManager(maxsize=THREADS)
        self.base = f"{host.rstrip('/')}/v1/website/{website_id}"
        token = base64.b64encode(f"{identifier}:{key}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "X-Crisp-Tier": tier}

    def get(self, path: str, fields: dict[str, Any]) -> Any:
        answer = self.pool.request("GET", self.base + path, fields=fields, headers=self.headers)
        return json.loads(answer.data)["data"]

    def conversations(self) -> Iterator[dict[str, Any]]:
        """Every conversation, page by page."""
        number = 1
        while True:
            page = self.get(f"/conversations/{number}", {"per_page": LISTING_PAGE})
            yield from page
            if len(page) < LISTING_PAGE:
                return
            number += 1

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        """Every message of a conversation, from its newest page back."""
        found: list[dict[str, Any]] = []
        fields: dict[str, Any] = {}
        while True:
            page = self.get(f"/conversation/{session_id}/messages", fields)
            found = page + found
            if len(page) < MESSAGES_PAGE:
                return found
            fields = {"timestamp_before": page[0]["timestamp"]}


def copy(copier: Copier, path: str) -> dict[str, int]:
    """Copy every conversation and its messages into the SQLite file at ``path``."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE conversations (session_id TEXT PRIMARY KEY, data TEXT)")
    db.execute("CREATE TABLE messages (session_id TEXT, fingerprint INTEGER, data TEXT,"
               " PRIMARY KEY (session_id, fingerprint))")
    lock = threading.Lock()
    counts = {"conversations": 0, "messages": 0}

    def save(conversation: dict[str, Any]) -> None:
        session_id = conversation["session_id"]
        messages = copier.messages(session_id)
        with lock:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO conversations VALUES (?, ?)",
                       (session_id, json.dumps(conversation)))
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?)",
                           [(session_id, m["fingerprint"], json.dumps(m)) for m in messages])
            db.execute("COMMIT")
            counts["conversations"] += 1
            counts["messages"] += len(messages)

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(save, c) for c in copier.conversations()]:
            future.result()
    db.close()
    return counts


def list_only(copier: Copier) -> dict[str, float]:
    """List every conversation and nothing else; the loop's CPU seconds and the entries."""
    started = time.process_time()
    entries = sum(1 for _ in copier.conversations())
    return {"listing_cpu_s": time.process_time() - started, "entries": entries}


def main(argv: Sequence[str]) -> int:
    host, identifier, key, tier, website_id, target = argv
    copier = Copier(host, identifier, key, tier, website_id)
    found = list_only(copier) if target == "--list-only" else copy(copier, target)
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
