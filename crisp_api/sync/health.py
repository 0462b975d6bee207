"""What an operator of follow mode watches: the service's state and what is wrong
(`Health`), served on ``/healthz`` and in the metrics (`crisp_api.sync.monitoring`).

A service has three states, not two: working (``ok``), degraded (a dependency is away, or
something has been failing for less than the threshold: it still works) and failing
(something has failed for longer than the threshold); and ``initial sync`` until its first
sync ended.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from crisp_api.sync.allowance import utc

DEFAULT_HEALTH_THRESHOLD = 900.0
"""Seconds reconciliation, or the database, may keep failing before /healthz fails."""
INITIAL_SYNC, OK, DEGRADED, FAILING = "initial sync", "ok", "degraded", "failing"
STATES = (INITIAL_SYNC, OK, DEGRADED, FAILING)
"""The service's states: its first sync running; all well; a dependency away (live events,
or the database or reconciliation failing for less than the threshold): still working;
something failing for longer than the threshold."""
NOT_CONNECTED_YET = "not connected yet"
"""Why live events are off before the first connection, or its first failure."""
RECONCILIATION, DATABASE, REDIS = "reconciliation", "the database", "Redis"
"""What can fail, as `Health` names it."""


class Health:
    """The state an operator watches; thread-safe; all times are `time.monotonic`."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.initial_sync = True
        """Until the first sync (or a fleet's first reconciliation) ended."""
        self.live_events = False
        self.events_off_reason = NOT_CONNECTED_YET
        self.last_reconciled: float | None = None
        """When the last complete reconciliation ended."""
        self.reconciliations = 0
        self.runs: Counter[tuple[str, str]] = Counter()
        """Sync runs ended, by kind (``first``, ``reconciliation``) and outcome (``complete``,
        ``incomplete``, ``failed``)."""
        self.events_pending = 0
        self.events_dropped = 0
        self.touched = 0
        self.recheck_calls = 0
        self.profiles_deferred = 0
        self.profiles_not_deferred = 0
        self.quota_spent_until: float | None = None
        """When Crisp's daily quota is expected to reset, while it is spent (epoch seconds):
        the service is degraded, not failing, meanwhile."""
        self._failing: dict[str, tuple[float, str]] = {}

    def fail(self, what: str, reason: str) -> bool:
        """Note that ``what`` failed (its clock starts at the first failure); whether it was
        working until now."""
        with self._lock:
            known = self._failing.get(what)
            self._failing[what] = (time.monotonic() if known is None else known[0], reason)
            return known is None

    def recover(self, what: str) -> bool:
        """Note that ``what`` works again; whether it was failing."""
        with self._lock:
            return self._failing.pop(what, None) is not None

    def failing(self, what: str) -> bool:
        """Whether ``what`` is failing now."""
        with self._lock:
            return what in self._failing

    def first_sync_ended(self, complete: bool) -> None:
        """Count the first sync; an incomplete one leaves reconciliation failing until one
        completes."""
        self.ran("first", "complete" if complete else "incomplete")
        if not complete:
            self.fail(RECONCILIATION, "the first sync is incomplete")

    def ran(self, kind: str, outcome: str) -> None:
        """Count a sync run that ended; the first one ends the initial sync."""
        with self._lock:
            self.runs[kind, outcome] += 1
            self.initial_sync = False

    def state(self, threshold: float, now: float | None = None) -> tuple[str, list[str]]:
        """The state (one of `STATES`) and what is wrong, worst first."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failing = sorted(self._failing.items(), key=lambda item: item[1][0])
            initial, live, off = self.initial_sync, self.live_events, self.events_off_reason
            spent = self.quota_spent_until
        long = [f"{what} has failed for {now - since:.0f} s ({reason})"
                for what, (since, reason) in failing if now - since > threshold]
        short = [f"{what} has been failing for {now - since:.0f} s ({reason})"
                 for what, (since, reason) in failing if now - since <= threshold]
        reasons = [*long, *([] if live else [f"live events off: {off}"]), *short]
        if spent is not None:
            reasons.append(f"quota spent until {utc(spent)}")
        if long:
            return FAILING, reasons
        if initial:
            return INITIAL_SYNC, reasons
        return (DEGRADED if reasons else OK), reasons
