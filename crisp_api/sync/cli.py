"""``crisp-sync``: mirror Crisp conversations and messages into a local SQLite database.

Every way a run can end has its exit status and a one-line reason on stderr (`EXIT_CODES`);
only 0 means the copy is complete, and only 1 asks for a plain rerun.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from crisp_api import defaults
from crisp_api.client import Crisp
from crisp_api.errors import (
    ForbiddenError,
    NetworkError,
    NotFoundError,
    RouteError,
    UnauthorizedError,
)
from crisp_api.pagination import paginate
from crisp_api.sync import sharding
from crisp_api.sync.engine import DEFAULT_PEOPLE_INTERVAL, SyncReport, describe, sync_website
from crisp_api.sync.metrics import RequestCounter, install
from crisp_api.sync.report import summary
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import StoreError, WebsiteLockedError

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_STORE, EXIT_LOCKED, EXIT_INTERRUPTED = 5, 6, 130
EXIT_CODES = {
    EXIT_OK: "the copy is complete",
    EXIT_INCOMPLETE: "something is left to do (a conversation or the network failed): rerun",
    EXIT_USAGE: "bad arguments or configuration, or a website or API host that does not exist",
    EXIT_AUTH: "the credentials were refused, or the token may not do this",
    EXIT_UNREACHABLE: "the API cannot be reached",
    EXIT_STORE: "the database cannot be written (read-only, disk full, not a database)",
    EXIT_LOCKED: "another run is syncing the same website into the same database",
    EXIT_INTERRUPTED: "interrupted; committed work is kept",
}
"""What each exit status means (listed by ``--help``)."""
DEMO_DB = "crisp-demo.sqlite3"
DEMO_CONVERSATIONS = 500


@dataclass(frozen=True)
class Target:
    """Where and as whom to sync."""

    rest_host: str | None
    identifier: str
    key: str
    tier: str


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring for exit statuses)."""
    parser = argparse.ArgumentParser(
        prog="crisp-sync",
        description="Mirror Crisp conversations, messages, people and operators into SQLite. "
        "Credentials come from CRISP_IDENTIFIER, CRISP_KEY and CRISP_TIER (default plugin).",
        epilog="exit status:\n"
        + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--website-id", help="the website to sync")
    parser.add_argument("--db", help="SQLite database file (default crisp.sqlite3)")
    parser.add_argument("--rest-host", help="API host (default $CRISP_REST_HOST or Crisp's)")
    parser.add_argument("--workers", type=int, default=8, help="parallel fetchers (default 8)")
    parser.add_argument(
        "--all-websites",
        action="store_true",
        help="sync every website the plugin token is connected to",
    )
    parser.add_argument("--shard", help="with --all-websites: take the i-th of N slices (i/N)")
    parser.add_argument("--redis-url", help="share rate limit and cache through Redis")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=defaults.ADAPTIVE,
        metavar="RATE",
        help="requests per second of our own, or 'adaptive' (the default): a rate learnt "
        "from Crisp's 429/420 answers",
    )
    parser.add_argument(
        "--people-interval",
        type=_duration,
        default=DEFAULT_PEOPLE_INTERVAL,
        metavar="DURATION",
        help="list every people profile again only after this long (e.g. 30m, 24h; default "
        "24h; 0 = every run): Crisp cannot list only the profiles that changed",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="sync a seeded local fake Crisp (no account needed), then an incremental run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``crisp-sync``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check(args)
        if args.demo:
            return _demo(args)
        target = _target_from_environment(args)
        with _store(args.db or "crisp.sqlite3") as store:
            return _run(args, target, store, sys.stdout)
    except _UsageError as exc:
        print(f"crisp-sync: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        return _store_failed(exc)
    except KeyboardInterrupt:
        print("crisp-sync: interrupted; committed work is kept, rerun to finish", file=sys.stderr)
        return EXIT_INTERRUPTED


class _UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit status 2."""


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``1d`` (argparse type)."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    try:
        seconds = float(value[: len(value) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 24h)") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be >= 0, got {text!r}")
    return seconds


def _check(args: argparse.Namespace) -> None:
    if args.workers < 1 or args.workers > 256:
        raise _UsageError(f"--workers must be between 1 and 256, got {args.workers}")
    if not args.demo and not args.all_websites and not args.website_id:
        raise _UsageError("give --website-id, --all-websites or --demo")
    if args.website_id and args.all_websites:
        raise _UsageError("--website-id and --all-websites exclude each other")
    if args.shard and not args.all_websites:
        raise _UsageError("--shard goes with --all-websites")
    if args.shard:
        try:
            sharding.parse_shard(args.shard)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None


def _rate_limit(value: str) -> float | str:
    """``--rate-limit``: ``adaptive`` or a positive number of requests per second."""
    if value == defaults.ADAPTIVE:
        return value
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if not 0 < rate < math.inf:
        raise argparse.ArgumentTypeError(
            f"must be {defaults.ADAPTIVE!r} or a positive number of requests/s, got {value!r}"
        )
    return rate


def _target_from_environment(args: argparse.Namespace) -> Target:
    identifier = os.environ.get("CRISP_IDENTIFIER", "")
    key = os.environ.get("CRISP_KEY", "")
    if not identifier or not key:
        raise _UsageError("set CRISP_IDENTIFIER and CRISP_KEY (your token keypair)")
    tier = os.environ.get("CRISP_TIER", "plugin")
    if tier not in defaults.TIERS:
        raise _UsageError(f"CRISP_TIER must be one of {sorted(defaults.TIERS)}, got {tier!r}")
    return Target(args.rest_host or os.environ.get("CRISP_REST_HOST"), identifier, key, tier)


@contextmanager
def _store(path: str) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as store:
        yield store


def _client(args: argparse.Namespace, target: Target) -> Crisp:
    options: dict[str, Any] = {
        "pool_size": max(defaults.POOL_SIZE, args.workers),
        "rate_limit": args.rate_limit,
    }
    if args.redis_url:
        options["redis_url"] = args.redis_url
    try:
        client = Crisp(**options)
        client.set_tier(target.tier)
        if target.rest_host:
            client.set_rest_host(target.rest_host)
        client.authenticate(target.identifier, target.key)
    except (ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    return client


def _run(args: argparse.Namespace, target: Target, store: SQLiteStore, out: TextIO) -> int:
    """Sync every chosen website once and print the summary; returns the exit status."""
    counter = RequestCounter()
    with _client(args, target) as client:
        install(counter, client)
        started = time.monotonic()
        reports: list[SyncReport] = []
        try:
            for website_id in _websites(args, client):
                report = _sync_one(args, client, website_id, store)
                if report is not None:
                    reports.append(report)
        except WebsiteLockedError as exc:
            return _fail(f"{exc}; not starting a second one", EXIT_LOCKED)
        except StoreError as exc:
            return _store_failed(exc)
        except (UnauthorizedError, ForbiddenError) as exc:
            return _fail(f"bad credentials or not allowed ({exc})", EXIT_AUTH)
        except NotFoundError as exc:
            return _fail(
                f"not found at {client.get_rest_host()}{client.get_rest_base_path()} ({exc}): "
                "check the website id, and that --rest-host is the API's root "
                f"(e.g. {defaults.REST_HOST}, without {defaults.REST_BASE_PATH})",
                EXIT_USAGE,
            )
        except NetworkError as exc:
            return _fail(f"cannot reach {client.get_rest_host()} ({exc})", EXIT_UNREACHABLE)
        except RouteError as exc:
            return _fail(f"sync failed ({exc}); rerun to finish", EXIT_INCOMPLETE)
        except Exception as exc:  # anything else (an odd row, a bug): one line, checkpoint kept
            return _fail(f"sync failed ({describe(exc)}); rerun to finish", EXIT_INCOMPLETE)
        print(summary(reports, counter.snapshot(), time.monotonic() - started), file=out)
    failures = [r.store_error for r in reports if r.store_error is not None]
    if any(failure.permanent for failure in failures):
        return _store_failed(next(f for f in failures if f.permanent))
    if not all(r.complete for r in reports):
        return _fail("some conversations could not be synced (listed above); rerun to finish",
                     EXIT_INCOMPLETE)
    return EXIT_OK


def _sync_one(
    args: argparse.Namespace, client: Crisp, website_id: str, store: SQLiteStore
) -> SyncReport | None:
    """One website's sync; None for a website of ``--all-websites`` that is gone."""
    with _progress(args, website_id) as tick:
        try:
            return sync_website(
                client,
                website_id,
                store,
                workers=args.workers,
                people_interval=args.people_interval,
                on_conversation=tick,
            )
        except NotFoundError:
            if not args.all_websites:
                raise
    print(f"crisp-sync: website {website_id} is gone (disconnected?); skipped", file=sys.stderr)
    return None


def _fail(reason: str, status: int) -> int:
    print(f"crisp-sync: {reason}", file=sys.stderr)
    return status


def _store_failed(exc: StoreError) -> int:
    if exc.permanent:
        return _fail(f"cannot write the database: {exc}", EXIT_STORE)
    return _fail(f"the database failed: {exc}; rerun to finish", EXIT_INCOMPLETE)


def _websites(args: argparse.Namespace, client: Crisp) -> Iterator[str]:
    if not args.all_websites:
        yield args.website_id
        return
    shard = sharding.parse_shard(args.shard) if args.shard else (1, 1)
    for connected in paginate(client.plugin.list_all_connect_websites, use_cache=False):
        website_id = connected.get("website_id") if isinstance(connected, dict) else None
        if isinstance(website_id, str) and sharding.in_shard(website_id, *shard):
            yield website_id


@contextmanager
def _progress(args: argparse.Namespace, website_id: str) -> Iterator[Callable[[], None]]:
    """A thread-safe tick for a tqdm bar on a terminal; a no-op elsewhere or without tqdm."""
    if args.no_progress or not sys.stderr.isatty():
        yield _nothing
        return
    try:
        from tqdm import tqdm  # noqa: PLC0415 - optional dependency, terminal only
    except ImportError:
        yield _nothing
        return
    lock = threading.Lock()
    with tqdm(desc=website_id[:13], unit=" conversations", file=sys.stderr) as bar:

        def tick() -> None:
            with lock:
                bar.update(1)

        yield tick


def _nothing() -> None:
    return None


def _demo(args: argparse.Namespace) -> int:
    """Sync a seeded fake Crisp (with a few faults), then change it and sync incrementally."""
    from crisp_api.testing import FakeCrisp, Faults  # noqa: PLC0415 - demo only

    path = Path(args.db or DEMO_DB)
    if args.db and path.exists():
        raise _UsageError(f"--demo wants a new database file; {path} exists")
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    faults = Faults(error_rate=0.02, throttle_rate=0.003, drop_before_rate=0.005, seed=7)
    with ExitStack() as stack:
        fake = stack.enter_context(
            FakeCrisp(conversations=DEMO_CONVERSATIONS, messages=30, seed=7, faults=faults)
        )
        store = stack.enter_context(_store(str(path)))
        args.website_id = fake.website_id
        target = Target(fake.url, fake.identifier, fake.key, "plugin")
        print(
            f"demo: a fake Crisp at {fake.url} with {DEMO_CONVERSATIONS} conversations, "
            f"2% 5xx, 0.3% 429/420, 0.5% dropped connections; syncing into {path}"
        )
        status = _run(args, target, store, sys.stdout)
        if status != EXIT_OK:
            return status
        fake.touch_conversations(25)
        fake.create_conversations(5, messages=3)
        print("demo: 25 conversations got a new message and 5 were created; syncing again")
        return _run(args, target, store, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
