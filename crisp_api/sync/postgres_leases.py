"""Leases on websites in PostgreSQL: which worker of a fleet syncs which website.

A lease is a row of ``sync_leases``: its owner (one per store object), who that is (pid and
host, for messages) and until when it holds, in PostgreSQL's clock (``now()``), so the
workers' own clocks never matter. The owner renews its leases every third of their time to
live from a daemon thread; a worker that dies (``kill -9``, a lost machine) stops renewing and
its websites are free once ``ttl`` has passed. Nothing else coordinates the workers: a free
website is taken with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two workers asking at once get
different websites, and ``sync_workers`` holds each live worker's heartbeat so that workers
that follow can split the websites evenly.

A lease given back is announced on the ``crisp_sync_leases`` channel (``NOTIFY``, sent when
the transaction commits): a worker waiting for websites others hold (`watch_releases`, then
`wait_for_release`) looks again at once instead of at its next poll, so a fleet ends when its
last website does. A lease that expires (its worker died) is announced by nobody: the poll
finds it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crisp_api.sync.store import StoreError, WebsiteLockedError

if TYPE_CHECKING:
    from crisp_api.sync.postgres_database import Listener, PgDatabase

DEFAULT_LEASE_TTL = 60.0
"""Seconds a website stays held by a worker that stopped renewing its lease."""
MIN_LEASE_TTL = 3.0
"""The shortest time to live: renewals (every third of it) must fit in it."""

RELEASES = "crisp_sync_leases"
"""The channel a lease given back is announced on."""

logger = logging.getLogger(__name__)

_TAKE = """
INSERT INTO sync_leases AS l (website_id, owner, holder, lease_until, claimed_at)
VALUES (%(website)s, %(owner)s, %(holder)s, now() + %(ttl)s * interval '1 second', now())
ON CONFLICT (website_id) DO UPDATE SET owner = excluded.owner, holder = excluded.holder,
    lease_until = excluded.lease_until, claimed_at = excluded.claimed_at
WHERE l.owner IS NULL OR l.lease_until < now()
RETURNING website_id
"""
_CLAIM = """
WITH next AS (
    SELECT website_id FROM sync_leases
    WHERE website_id = ANY(%(among)s::text[]) AND NOT (website_id = ANY(%(exclude)s::text[]))
      AND (owner IS NULL OR lease_until < now())
      AND (%(due)s::timestamptz IS NULL OR synced_at IS NULL OR synced_at < %(due)s)
    ORDER BY synced_at NULLS FIRST, website_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE sync_leases AS l SET owner = %(owner)s, holder = %(holder)s,
    lease_until = now() + %(ttl)s * interval '1 second', claimed_at = now()
FROM next WHERE l.website_id = next.website_id
RETURNING l.website_id
"""
_RELEASE = """
UPDATE sync_leases SET owner = NULL, holder = NULL, lease_until = NULL,
    synced_at = CASE WHEN %(synced)s THEN claimed_at ELSE synced_at END
WHERE website_id = %(website)s AND owner = %(owner)s
"""
_RENEW = """
UPDATE sync_leases SET lease_until = now() + %(ttl)s * interval '1 second'
WHERE owner = %(owner)s AND website_id = ANY(%(held)s::text[])
RETURNING website_id
"""
_BEAT = """
INSERT INTO sync_workers (owner, holder, alive_until)
VALUES (%(owner)s, %(holder)s, now() + %(ttl)s * interval '1 second')
ON CONFLICT (owner) DO UPDATE SET alive_until = excluded.alive_until
"""


class Leases:
    """The websites one worker (one store object) holds; safe to use from threads.

    A lease is either claimed by the fleet loop (`claim`, until `give_back`) or taken for one
    run by the store's ``lock`` (`hold`). A run on a website this worker claimed uses the
    claimed lease; a second run of one website at once is refused, here as elsewhere.
    """

    def __init__(self, db: PgDatabase, *, ttl: float) -> None:
        if not ttl >= MIN_LEASE_TTL:
            raise ValueError(
                f"the lease time to live must be at least {MIN_LEASE_TTL:g} seconds, got {ttl}"
            )
        self.ttl = ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self.holder = f"pid {os.getpid()} on host {socket.gethostname()}"
        self._db = db
        self._lock = threading.Lock()
        self._owned: set[str] = set()
        self._running: set[str] = set()
        self._lost: dict[str, threading.Event] = {}
        self._in_fleet = False
        self._closing = threading.Event()
        self._renewer: threading.Thread | None = None
        self._listener: Listener | None = None

    def now(self) -> datetime:
        """PostgreSQL's clock: the one every lease and 'due' time is read against."""
        with self._db.transaction("read the clock") as cur:
            row = cur.execute("SELECT now()").fetchone()
        assert row is not None
        now: datetime = row[0]
        return now

    @contextmanager
    def hold(self, website_id: str) -> Iterator[None]:
        """Hold ``website_id`` for one run; `WebsiteLockedError` if another worker holds it
        or a run of it is going on here. A lease this worker claimed stays claimed after."""
        with self._lock:
            if website_id in self._running:
                raise WebsiteLockedError(website_id, f"{self.holder}, this same process")
            claimed = website_id in self._owned
            self._running.add(website_id)
        try:
            if not claimed:
                self._take(website_id)
            try:
                yield
            finally:
                if not claimed:
                    self.give_back(website_id)
        finally:
            with self._lock:
                self._running.discard(website_id)

    def _take(self, website_id: str) -> None:
        """Take the website's lease (creating its row) unless a live lease of another worker
        holds it (`WebsiteLockedError`)."""
        with self._db.transaction("take a lease") as cur:
            taken = cur.execute(_TAKE, self._params(website=website_id)).fetchone()
            if taken is None:
                row = cur.execute(
                    "SELECT holder, lease_until FROM sync_leases WHERE website_id = %s",
                    (website_id,),
                ).fetchone()
        if taken is None:
            holder, until = row if row is not None else ("another worker", None)
            # ``until`` comes in the session's time zone (the server's TimeZone): show UTC.
            ends = None if until is None else until.astimezone(UTC)
            expiry = "" if ends is None else f", its lease ends {ends:%Y-%m-%dT%H:%M:%SZ}"
            raise WebsiteLockedError(website_id, f"{holder}{expiry}")
        self._owned_now(website_id)

    def claim(
        self,
        among: Sequence[str],
        *,
        due_before: datetime | None = None,
        exclude: Collection[str] = (),
    ) -> str | None:
        """Take a free website of ``among`` (not in ``exclude``, and not synced completely
        since ``due_before`` when given), those never synced or synced longest ago first;
        None when there is none. Several workers claiming at once get different websites."""
        with self._db.transaction("claim a website") as cur:
            row = cur.execute(_CLAIM, self._params(
                among=list(among), exclude=list(exclude), due=due_before
            )).fetchone()
        if row is None:
            return None
        website_id: str = row[0]
        self._owned_now(website_id)
        return website_id

    def give_back(self, website_id: str, *, synced: bool = False) -> None:
        """Free a lease this worker holds. ``synced``: the sync that began when it was
        claimed completed (the fleet's 'due' times are read from it)."""
        with self._lock:
            self._owned.discard(website_id)
            self._lost.pop(website_id, None)
        with self._db.transaction("give back a lease") as cur:
            cur.execute(_RELEASE, self._params(website=website_id, synced=synced))
            cur.execute(f"NOTIFY {RELEASES}")

    def watch_releases(self) -> None:
        """Listen for leases given back from now on (by any worker), for `wait_for_release`;
        call it before looking at what is pending, so that no release in between is missed.
        Without a listening connection (the database refused one), waits are plain sleeps."""
        if self._listener is None:
            try:
                self._listener = self._db.listener(RELEASES)
            except StoreError as exc:
                logger.warning("cannot listen for leases given back (polling instead): %s", exc)

    def wait_for_release(self, seconds: float) -> None:
        """Wait up to ``seconds``, less if a lease is given back meanwhile (or was since the
        last wait) while `watch_releases` listens."""
        listener = self._listener
        if listener is None:
            time.sleep(seconds)
            return
        try:
            listener.wait(seconds)
        except StoreError as exc:
            logger.warning("lost the connection listening for leases (polling instead): %s", exc)
            self._stop_watching()
            time.sleep(seconds)

    def _stop_watching(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def pending(
        self, among: Sequence[str], *, due_before: datetime, exclude: Collection[str] = ()
    ) -> bool:
        """Whether a website of ``among`` (not in ``exclude``) has not been synced completely
        since ``due_before``: one another worker holds now, or that was just freed."""
        with self._db.transaction("read the leases") as cur:
            row = cur.execute(
                "SELECT EXISTS (SELECT 1 FROM sync_leases WHERE website_id = ANY(%s::text[])"
                " AND NOT (website_id = ANY(%s::text[]))"
                " AND (synced_at IS NULL OR synced_at < %s))",
                (list(among), list(exclude), due_before),
            ).fetchone()
        return bool(row is not None and row[0])

    def add(self, website_ids: Collection[str]) -> int:
        """Make the websites known to the fleet (those new get a free lease row); how many
        were new."""
        with self._db.transaction("add websites") as cur:
            cur.execute(
                "INSERT INTO sync_leases (website_id) SELECT unnest(%s::text[]) "
                "ON CONFLICT (website_id) DO NOTHING",
                (list(website_ids),),
            )
            return max(cur.rowcount, 0)

    def held(self) -> list[str]:
        """The websites whose lease this worker holds now, sorted."""
        with self._lock:
            return sorted(self._owned)

    def lost(self, website_id: str) -> threading.Event:
        """Set if the lease of ``website_id`` is found taken over (this worker stalled for
        longer than the time to live): whoever syncs it here should stop."""
        with self._lock:
            return self._lost.setdefault(website_id, threading.Event())

    def live_workers(self) -> int:
        """Renew this worker's heartbeat in ``sync_workers``; how many workers are live
        (this one included). Workers that follow call it to know their fair share."""
        with self._lock:
            self._in_fleet = True
        self._ensure_renewer()
        with self._db.transaction("count the workers") as cur:
            cur.execute(_BEAT, self._params())
            cur.execute(  # workers long dead (killed: they never said goodbye)
                "DELETE FROM sync_workers WHERE alive_until < now() - interval '1 day'"
            )
            row = cur.execute(
                "SELECT count(*) FROM sync_workers WHERE alive_until >= now()"
            ).fetchone()
        return max(1, int(row[0]) if row is not None else 1)

    def close(self) -> None:
        """Stop renewing and free every lease and the heartbeat of this worker."""
        self._closing.set()
        if self._renewer is not None:
            self._renewer.join()
        self._stop_watching()
        with self._lock:
            held, self._owned = list(self._owned), set()
            in_fleet = self._in_fleet
        if not held and not in_fleet:
            return
        with self._db.transaction("free the leases") as cur:
            for website_id in held:
                cur.execute(_RELEASE, self._params(website=website_id, synced=False))
            if held:
                cur.execute(f"NOTIFY {RELEASES}")
            cur.execute("DELETE FROM sync_workers WHERE owner = %s", (self.owner,))

    def _owned_now(self, website_id: str) -> None:
        with self._lock:
            self._owned.add(website_id)
            self._lost[website_id] = threading.Event()
        self._ensure_renewer()

    def _params(self, **more: Any) -> dict[str, Any]:
        return {"owner": self.owner, "holder": self.holder, "ttl": self.ttl, **more}

    def _ensure_renewer(self) -> None:
        with self._lock:
            if self._renewer is not None or self._closing.is_set():
                return
            self._renewer = threading.Thread(
                target=self._renew_forever, name="crisp-sync leases", daemon=True
            )
            self._renewer.start()

    def _renew_forever(self) -> None:
        """Every third of the time to live, renew every lease held and the heartbeat; a lease
        found expired (this worker stalled) is marked lost. Failures are logged and retried."""
        while not self._closing.wait(self.ttl / 3):
            try:
                self._renew()
            except StoreError as exc:
                logger.warning("cannot renew the leases of this worker: %s", exc)

    def _renew(self) -> None:
        with self._lock:
            held = list(self._owned)
            in_fleet = self._in_fleet
        with self._db.transaction("renew the leases") as cur:
            renewed = {row[0] for row in cur.execute(_RENEW, self._params(held=held))}
            if in_fleet:
                cur.execute(_BEAT, self._params())
        with self._lock:
            for website_id in held:
                if website_id not in renewed and website_id in self._owned:
                    logger.warning("lost the lease of website %s (stalled too long)", website_id)
                    self._lost.setdefault(website_id, threading.Event()).set()
