"""A fleet of workers sharing websites through PostgreSQL leases, with no coordinator.

Every worker runs the same loops against the same database (`postgres_leases.Leases`):

- `sync_once` (one-shot): take a free website not synced since this worker started, sync it,
  give it back, until none is left. A website whose lease is held by another worker is waited
  for, so a worker that dies mid-sync (its lease expires after the time to live) has its
  website taken over and resumed from its checkpoint instead of left behind.
- `Share` (follow mode): hold about ``websites / live workers`` websites, releasing extras
  when workers join and claiming more when workers die or websites are connected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crisp_api.sync.engine import StopSignal, SyncReport

if TYPE_CHECKING:
    from crisp_api.sync.postgres_leases import Leases

SyncOne = Callable[[str, StopSignal], SyncReport | None]
"""Syncs one website (stopping early when the signal is set); None if the website is gone."""

WAIT_SECONDS = 0.25
"""How often a worker with nothing to claim looks again for websites held by others (two
cheap queries: the fleet's last worker to finish is not kept waiting long)."""


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
    websites: Sequence[str],
    sync_one: SyncOne,
    *,
    stop: StopSignal | None = None,
    wait: Callable[[float], object] = time.sleep,
) -> FleetRun:
    """Sync every website of ``websites`` that no worker synced completely since this call
    began, sharing them with the other workers; see the module docstring. Errors that end a
    run (`sync_one` raising) give the lease back and propagate."""
    run = FleetRun()
    began = leases.now()
    leases.add(websites)
    while stop is None or not stop.is_set():
        website_id = leases.claim(websites, due_before=began, exclude=run.failed)
        if website_id is None:
            if not leases.pending(websites, due_before=began, exclude=run.failed):
                break
            wait(min(WAIT_SECONDS, leases.ttl / 3))  # held by others: done, or taken over
            continue
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
    """This worker's share of the websites in follow mode (see the module docstring)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases

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
        return held

    def claim_one(self, websites: Sequence[str]) -> str | None:
        """Claim one more website if this worker holds less than its share."""
        if len(self.leases.held()) >= self.target(websites):
            return None
        return self.leases.claim(websites)
