"""How a crisp-sync run ends: its exit statuses and the one table from what ended it to them.

Every way a run can end has its status (`EXIT_CODES` says what each means, and ``--help``
lists them) and a one-line reason on stderr (`fail`); only 0 means the copy is complete, and
only 1 asks for a plain rerun. What ends a run early is an exception; `ended` finds the first
row of `ENDINGS` whose class matches it (rows go from the most specific class to the most
general) and says its status and reason. A spent daily quota is the one ending that needs
more than the exception (the allowance's figures: `crisp_api.sync.run.quota_spent`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crisp_api import defaults
from crisp_api.errors import (
    ForbiddenError,
    NetworkError,
    NotFoundError,
    RouteError,
    UnauthorizedError,
)
from crisp_api.events import EventsUnauthorizedError
from crisp_api.sync.engine import describe
from crisp_api.sync.logs import outcome
from crisp_api.sync.store import StoreError, WebsiteLockedError

if TYPE_CHECKING:
    from crisp_api.client import Crisp

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_STORE, EXIT_LOCKED, EXIT_QUOTA, EXIT_INTERRUPTED = 5, 6, 7, 130
EXIT_CODES = {
    EXIT_OK: "the copy is complete",
    EXIT_INCOMPLETE: "something is left to do (a conversation or the network failed): rerun",
    EXIT_USAGE: "bad arguments or configuration, or a website or API host that does not exist",
    EXIT_AUTH: "the credentials were refused, or the token may not do this",
    EXIT_UNREACHABLE: "the API cannot be reached",
    EXIT_STORE: "the database cannot be used (read-only, disk full, not a database; "
    "PostgreSQL: credentials refused or no such database)",
    EXIT_LOCKED: "another run is syncing the same website into the same database",
    EXIT_QUOTA: "Crisp's daily request quota is spent: progress is kept; run again after the "
    "time given (the next reset)",
    EXIT_INTERRUPTED: "interrupted (SIGTERM, SIGINT or SIGHUP); committed work is kept",
}
"""What each exit status means (listed by ``--help``)."""
NOT_STARTED = frozenset({EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE})
"""The statuses of a run that could not begin (wrong website or host, refused credentials,
no API): it leaves no new database behind."""


class UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit status 2."""


class LeaseLostError(Exception):
    """Websites this worker synced while another took their lease over (it stalled)."""

    def __init__(self, websites: list[str]) -> None:
        super().__init__(
            f"lost the lease of {len(websites)} website(s) ({', '.join(websites[:3])}) while "
            "syncing them: this worker stalled for longer than --lease-ttl"
        )


Ending = Callable[[Any, "Crisp | None"], tuple[int, str]]
"""The status and reason of an exception, given the client of the run (None before one)."""


def _store(error: StoreError, _: Crisp | None) -> tuple[int, str]:
    if error.permanent:
        return EXIT_STORE, f"cannot write the database: {error}"
    return EXIT_INCOMPLETE, f"the database failed: {error}; rerun to finish"


def _not_found(error: NotFoundError, client: Crisp | None) -> tuple[int, str]:
    return EXIT_USAGE, (
        f"not found at {_api(client)} ({error}): check the website id, and that --rest-host "
        f"is the API's root (e.g. {defaults.REST_HOST}, without {defaults.REST_BASE_PATH})"
    )


def _api(client: Crisp | None, *, root: bool = True) -> str:
    """The API the client calls (its host, and its base path if ``root``)."""
    if client is None:
        return "the API"
    return client.get_rest_host() + (client.get_rest_base_path() if root else "")


ENDINGS: tuple[tuple[type[Exception], Ending], ...] = (
    (UsageError, lambda e, _: (EXIT_USAGE, str(e))),
    (WebsiteLockedError, lambda e, _: (EXIT_LOCKED, f"{e}; not starting a second one")),
    (LeaseLostError, lambda e, _: (EXIT_INCOMPLETE, f"{e}; rerun to finish")),
    (StoreError, _store),
    (EventsUnauthorizedError, lambda e, _: (
        EXIT_AUTH, f"the event socket refused the credentials ({e})")),
    (UnauthorizedError, lambda e, _: (EXIT_AUTH, f"bad credentials or not allowed ({e})")),
    (ForbiddenError, lambda e, _: (EXIT_AUTH, f"bad credentials or not allowed ({e})")),
    (NotFoundError, _not_found),
    (NetworkError, lambda e, client: (
        EXIT_UNREACHABLE, f"cannot reach {_api(client, root=False)} ({e})")),
    (RouteError, lambda e, _: (EXIT_INCOMPLETE, f"sync failed ({e}); rerun to finish")),
    # anything else (an odd row, a bug): one line, the checkpoint kept
    (Exception, lambda e, _: (EXIT_INCOMPLETE, f"sync failed ({describe(e)}); rerun to finish")),
)


def ended(error: Exception, client: Crisp | None = None) -> int:
    """Say why ``error`` ended the run (its row of `ENDINGS`: the last one takes any
    exception); its exit status."""
    status, reason = next(ending(error, client) for kind, ending in ENDINGS
                          if isinstance(error, kind))
    return fail(reason, status)


def fail(reason: str, status: int, **fields: Any) -> int:
    """Say why the run ends with ``status`` (one line on stderr); returns ``status``."""
    outcome("sync.failed", f"crisp-sync: {reason}", level="error", reason=reason,
            exit_status=status, **fields)
    return status
