"""Follow mode: a long-running mirror that applies live events between reconciliations.

`Follower.run` keeps two things going until its ``stop`` event is set (SIGTERM, SIGINT):

* the main thread takes Crisp's events off the RTM stream (and, through `Follower.apply`,
  off web hooks) and applies them to the store as they come (`EventApplier`);
* a reconciliation thread runs an incremental sync of every website every ``interval``
  seconds, which catches up whatever the events missed (a dropped socket, a restart), so the
  copy is exact even when events are lost.

`Health` is what the operator sees: whether the socket is up, when the last complete
reconciliation ended, since when things are failing; ``/healthz`` and the metrics read it.
A fatal condition ends the run with an exit status: refused credentials (the socket's
``unauthorized``), or a store that cannot be written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from crisp_api.sync.engine import SyncReport, describe
from crisp_api.sync.event_applier import EventApplier, InvalidEventError
from crisp_api.sync.store import StoreError

DEFAULT_INTERVAL = 300.0
"""Seconds between reconciliations."""
DEFAULT_HEALTH_THRESHOLD = 900.0
"""Seconds the socket may stay down, or reconciliation keep failing, before /healthz fails."""


class EventSource(Protocol):
    """What follow mode reads events from (`crisp_api.events.EventStream` is one)."""

    @property
    def connected(self) -> bool:
        """Whether the socket is up and authenticated."""
        ...

    def get(self, timeout: float | None = None) -> Any:
        """The next event (``name`` and ``data`` attributes), or None after ``timeout``."""
        ...

    def close(self) -> None:
        """Disconnect for good."""
        ...


@dataclass
class Health:
    """The state an operator watches; all times are `time.monotonic`."""

    started: float = field(default_factory=time.monotonic)
    socket_connected: bool = False
    socket_down_since: float | None = None
    last_reconciled: float | None = None
    """When the last complete reconciliation ended."""
    failing_since: float | None = None
    """When reconciliations started to fail (None while they succeed)."""
    reconciliations: int = 0
    last_error: str | None = None

    def problems(self, threshold: float, now: float | None = None) -> list[str]:
        """What is wrong for longer than ``threshold`` seconds (empty: healthy)."""
        now = time.monotonic() if now is None else now
        found = []
        if not self.socket_connected:
            down = self.socket_down_since if self.socket_down_since is not None else self.started
            if now - down > threshold:
                found.append(f"the event socket has been down for {now - down:.0f} s")
        if self.failing_since is not None and now - self.failing_since > threshold:
            found.append(
                f"reconciliation has failed for {now - self.failing_since:.0f} s "
                f"({self.last_error})"
            )
        return found


class Fatal(Exception):  # noqa: N818 - a stop reason, not an error class of the API
    """Follow mode cannot go on: ``status`` is the exit status, the message the reason."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status


class Follower:
    """Runs follow mode; see the module docstring.

    ``reconcile(stop)`` runs one incremental sync of every website and returns the reports
    (the first one at once with ``reconcile_at_start``, else after ``interval``).
    ``source`` gives the live events. ``fatal_errors`` maps exception types raised by the
    source (e.g. refused credentials) to exit statuses. ``logger`` is a structlog logger.
    """

    def __init__(
        self,
        *,
        applier: EventApplier,
        source: EventSource,
        reconcile: Callable[[threading.Event], list[SyncReport]],
        interval: float,
        stop: threading.Event,
        fatal_errors: dict[type[BaseException], int],
        store_status: int,
        logger: Any,
        health: Health | None = None,
        on_event: Callable[[str, float], None] | None = None,
        reconcile_at_start: bool = False,
    ) -> None:
        self.applier = applier
        self.source = source
        self.reconcile = reconcile
        self.interval = interval
        self.stop = stop
        self.fatal_errors = fatal_errors
        self.store_status = store_status
        self.logger = logger
        self.health = health or Health()
        self.on_event = on_event
        self.reconcile_at_start = reconcile_at_start
        self._fatal: Fatal | None = None
        self._lock = threading.Lock()

    def run(self) -> int:
        """Follow until ``stop`` is set (0) or a fatal condition (its status)."""
        reconciler = threading.Thread(
            target=self._reconcile_forever, name="crisp-sync-reconcile", daemon=True
        )
        reconciler.start()
        try:
            while not self.stop.is_set():
                self._note_socket(self.source.connected)
                try:
                    event = self.source.get(timeout=0.5)
                except tuple(self.fatal_errors) as exc:
                    raise Fatal(str(exc), self.fatal_errors[type(exc)]) from exc
                if event is not None:
                    self.apply(event.name, event.data)
        except Fatal as exc:
            self._set_fatal(exc)
        finally:
            self.stop.set()
            self.source.close()
            reconciler.join()
        return 0 if self._fatal is None else self._fatal.status

    @property
    def fatal(self) -> Fatal | None:
        """What ended the run, if it did not end on ``stop``."""
        return self._fatal

    def apply(self, name: str, data: object) -> None:
        """Apply one event (from the socket or a web hook); a bad one is logged and dropped,
        a store that cannot be written ends the run."""
        received = time.monotonic()
        try:
            applied = self.applier.apply(name, data)
        except InvalidEventError as exc:
            self.logger.warning("event.invalid", reason=str(exc))
            return
        except StoreError as exc:
            if exc.permanent:
                self._set_fatal(Fatal(f"cannot write the database: {exc}", self.store_status))
                self.stop.set()
            else:
                self.logger.warning("event.not_applied", reason=str(exc))
            return
        if applied is not None and self.on_event is not None:
            self.on_event(name, time.monotonic() - received)

    def _note_socket(self, connected: bool) -> None:
        health = self.health
        if connected == health.socket_connected:
            return
        health.socket_connected = connected
        health.socket_down_since = None if connected else time.monotonic()
        if connected:
            self.logger.info("socket.connected")
        else:
            self.logger.warning("socket.disconnected")

    def _reconcile_forever(self) -> None:
        """Reconcile every ``interval`` (the first at once if ``reconcile_at_start``) until
        stopped; failures are logged and retried at the next interval (the health check
        reports them if they last)."""
        wait = 0.0 if self.reconcile_at_start else self.interval
        while not self.stop.wait(wait):
            wait = self.interval
            try:
                reports = self.reconcile(self.stop)
            except StoreError as exc:
                if exc.permanent:
                    self._set_fatal(Fatal(f"cannot write the database: {exc}", self.store_status))
                    self.stop.set()
                    return
                self._failed(describe(exc))
                continue
            except Exception as exc:  # the next interval tries again; the health check sees it
                self._failed(describe(exc))
                continue
            if self.stop.is_set():
                return
            self._reconciled(reports)

    def _reconciled(self, reports: Iterable[SyncReport]) -> None:
        problems = [error for report in reports for error in report.errors]
        health = self.health
        health.reconciliations += 1
        if problems:
            self._failed(problems[0])
            return
        health.last_reconciled = time.monotonic()
        health.failing_since = None
        health.last_error = None
        self.logger.info("reconciliation.complete", reconciliations=health.reconciliations)

    def _failed(self, reason: str) -> None:
        health = self.health
        if health.failing_since is None:
            health.failing_since = time.monotonic()
        health.last_error = reason
        self.logger.warning("reconciliation.failed", reason=reason)

    def _set_fatal(self, fatal: Fatal) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = fatal
