"""A fleet of workers sharing websites through PostgreSQL leases, with no coordinator.

Every worker runs the same loops against the same database (`postgres_leases.Leases`):

- `sync_once` (one-shot): take a free website not synced since this worker started, sync it,
  give it back, until none is left. A website whose lease is held by another worker is waited
  for, so a worker that dies mid-sync (its lease expires after the time to live) has its
  website taken over and resumed from its checkpoint instead of left behind.
- `reconcile_share` (follow mode): hold about ``websites / live workers`` websites
  (`Share`), releasing extras when workers join and claiming more when workers die or
  websites are connected, and sync those held.

A store that can carry a fleet says so by having leases (`FleetStore`: `PostgresStore`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from crisp_api.sync.engine import StopSignal, SyncReport
from crisp_api.sync.website_list import WebsiteList

if TYPE_CHECKING:
    from datetime import datetime

    from crisp_api.sync.postgres_leases import Leases

SyncOne = Callable[[str, StopSignal], SyncReport | None]
"""Syncs one website (stopping early when the signal is set); None if the website is gone."""


@runtime_checkable
class FleetStore(Protocol):
    """A store that workers on several machines can share the websites of: it keeps the
    leases saying which worker holds which website."""

    @property
    def leases(self) -> Leases:
        """The websites' leases, in the store's database."""
        ...


WAIT_SECONDS = 0.25
"""How often a worker with nothing to claim looks again for websites held by others (two
cheap queries), at the latest: a lease given back wakes it at once (`Leases.wait_for_release`),
and only a lease that expires (its worker died) waits for the poll."""


def either(first: StopSignal | None, second: StopSignal) -> StopSignal:
    """A stop signal set when either of two is (a shutdown, or a lease lost)."""
    return _Either(first, second)


class _Either:
    """Set when either of two stop signals is."""

    def __init__(self, first: StopSignal | None, second: StopSignal) -> None:
        self._first = first
        self._second = second

    def is_set(self) -> bool:
        return (self._first is not None and self._first.is_set()) or self._second.is_set()


@dataclass
class FleetRun:
    """What one worker did in a one-shot run."""

    reports: list[SyncReport] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Websites whose sync this worker began and could not complete (or lost the lease of)."""
    lost: list[str] = field(default_factory=list)
    """Websites whose lease another worker took over while this one synced them (it
    stalled for longer than the lease's time to live)."""


def sync_once(
    leases: Leases,
    websites: Sequence[str] | WebsiteList,
    sync_one: SyncOne,
    *,
    stop: StopSignal | None = None,
    poll: float = WAIT_SECONDS,
    began: datetime | None = None,
) -> FleetRun:
    """Sync every website of ``websites`` that no worker synced completely since the run
    began, sharing them with the other workers; see the module docstring. A `WebsiteList`
    still being fetched is claimed from as it grows (and its failure raised). ``began`` is
    when the run began in the database's clock (`Leases.now`; by default, this call): read
    before the website list, a sync that another worker claims while the list is fetched
    counts, where it would otherwise be done again once it ends. Websites others hold are
    waited for until one is given back, looking again every ``poll`` seconds at the latest
    (see `WAIT_SECONDS`). Errors that end a run (`sync_one` raising) give the lease back and
    propagate."""
    run = FleetRun()
    if began is None:
        began = leases.now()
    listed = websites if isinstance(websites, WebsiteList) else WebsiteList.fixed(websites)
    added = 0
    listening = False
    while stop is None or not stop.is_set():
        known, whole = listed.snapshot()
        if len(known) > added:
            leases.add(known[added:])
            added = len(known)
        website_id = leases.claim(known, due_before=began, exclude=run.failed)
        if website_id is None:
            if not whole:  # the next page of the list is on its way
                listed.wait_for_more(len(known), poll)
                continue
            if not listening:
                # Nothing held by others: the run ends here, without opening a connection to
                # listen on (a process alone, or the fleet's last to end).
                if not leases.pending(known, due_before=began, exclude=run.failed):
                    break
                leases.watch_releases()  # then look again: no release after this is missed
                listening = True
            if not leases.pending(known, due_before=began, exclude=run.failed):
                break
            leases.wait_for_release(min(poll, leases.ttl / 3))  # held by others: done, or
            continue  # taken over once expired
        lost = leases.lost(website_id)
        synced = False
        try:
            report = sync_one(website_id, either(stop, lost))
            synced = report is not None and report.complete and not lost.is_set()
        finally:
            leases.give_back(website_id, synced=synced)
        if report is not None:
            run.reports.append(report)
        if lost.is_set():
            run.lost.append(website_id)
        if not synced:
            run.failed.append(website_id)
    return run


class Share:
    """This worker's share of the websites in follow mode (see the module docstring).
    ``held`` is what it holds (replaced whole: read from any thread)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.held: frozenset[str] = frozenset()

    def holds(self, website_id: str) -> bool:
        """Whether this worker holds ``website_id`` (its events are applied here)."""
        return website_id in self.held

    def target(self, websites: Sequence[str]) -> int:
        """How many websites this worker should hold: an even split over live workers."""
        return math.ceil(len(websites) / self.leases.live_workers())

    def rebalance(self, websites: Sequence[str]) -> list[str]:
        """Give back the leases lost, those of websites no longer listed and those beyond
        this worker's share; the websites held after that."""
        self.leases.add(websites)
        listed = set(websites)
        held = []
        for website_id in self.leases.held():
            if website_id not in listed or self.leases.lost(website_id).is_set():
                self.leases.give_back(website_id)
            else:
                held.append(website_id)
        target = self.target(websites)
        while len(held) > target:
            self.leases.give_back(held.pop())
        self.held = frozenset(held)
        return held

    def claim_one(self, websites: Sequence[str]) -> str | None:
        """Claim one more website if this worker holds less than its share."""
        if len(self.leases.held()) >= self.target(websites):
            return None
        claimed = self.leases.claim(websites)
        if claimed is not None:
            self.held |= {claimed}
        return claimed


def reconcile_share(
    share: Share, websites: Sequence[str], sync_one: SyncOne, *, stop: StopSignal
) -> list[SyncReport]:
    """A fleet worker's reconciliation over the ``websites`` listed: rebalance its share,
    sync those it holds, then claim and sync more while it holds less than its share, until
    ``stop``. A website is held (`Share.holds`: its events applied) before its sync begins,
    so no event of it is missed; a sync stops early if its lease is lost."""
    todo = share.rebalance(websites)
    reports = []
    while not stop.is_set():
        if not todo:
            claimed = share.claim_one(websites)
            if claimed is None:
                break
            todo.append(claimed)
        website_id = todo.pop(0)
        report = sync_one(website_id, either(stop, share.leases.lost(website_id)))
        if report is not None:
            reports.append(report)
    return reports
