"""What `crisp-sync` prints: the summary of a run (a few lines of text or, under
``--log-format json``, the same figures as the fields of one event: `summary_fields`), and the
status of a database (`status_table`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from crisp_api.sync.allowance import Figures, utc
from crisp_api.sync.engine import SyncReport
from crisp_api.sync.metrics import Counts
from crisp_api.sync.store import Changes, WebsiteStatus

LISTED_ITEMS = 5
"""Errors and warnings listed per website; the rest are counted."""


def summary_fields(reports: Sequence[SyncReport], counts: Counts,
                   elapsed: float, ledger: Figures | None = None) -> dict[str, Any]:
    """What changed, at what rate, and what it cost (``ledger``: the requests of the quota
    day, `crisp_api.sync.allowance`), as named figures."""
    seconds = max(elapsed, 1e-9)
    fields: dict[str, Any] = {
        "websites": len(reports),
        "complete": all(r.complete for r in reports),
        "elapsed_s": round(elapsed, 3),
    }
    for part in ("conversations", "messages", "people", "operators"):
        changes = sum((getattr(r, part) for r in reports), Changes())
        fields |= {f"{part}_added": changes.added, f"{part}_updated": changes.updated}
    fields["messages_removed"] = sum((r.messages for r in reports), Changes()).removed
    every = sum((getattr(r, part) for r in reports
                 for part in ("conversations", "messages", "people", "operators")), Changes())
    fields |= {
        "quarantined": every.quarantined,
        "quarantine_held": sum(r.quarantine_held or 0 for r in reports),
        "replaced": every.replaced,
    }
    fields |= {
        "conversations_per_s": round(sum(r.conversations_fetched for r in reports) / seconds),
        "messages_per_s": round((fields["messages_added"] + fields["messages_updated"])
                                / seconds),
        "people_listed": sum(r.people_listed for r in reports),
        "requests": counts.requests,
        "retries": counts.retries,
        "rate_limited": counts.rate_limited,
        "cache_hits": counts.cache_hits,
        "listing_calls": sum(r.listing_calls for r in reports),
        "message_calls": sum(r.message_calls for r in reports),
        "people_calls": sum(r.people_calls for r in reports),
        "operator_calls": len(reports),
        "errors": {r.website_id: _capped(r.errors) for r in reports if r.errors},
        "warnings": {r.website_id: _capped(r.warnings) for r in reports if r.warnings},
    }
    if ledger is not None:
        fields |= ledger.fields()
    return fields


def summary(reports: Sequence[SyncReport], counts: Counts, elapsed: float,
            ledger: Figures | None = None) -> str:
    """The figures of `summary_fields` as a few human-readable lines."""
    f = summary_fields(reports, counts, elapsed, ledger)
    lines = [
        f"crisp-sync: {f['websites']} website(s) {'complete' if f['complete'] else 'INCOMPLETE'}"
        f" in {elapsed:.1f} s",
        f"  conversations  added {f['conversations_added']:>8}  updated "
        f"{f['conversations_updated']:>8}  ({f['conversations_per_s']:,} conversations/s)",
        f"  messages       added {f['messages_added']:>8}  updated {f['messages_updated']:>8}"
        f"  removed {f['messages_removed']:>6}  ({f['messages_per_s']:,} messages/s)",
        f"  people         added {f['people_added']:>8}  updated {f['people_updated']:>8}"
        f"  ({_people_note(f['people_listed'], f['websites'])})",
        f"  operators      added {f['operators_added']:>8}  updated {f['operators_updated']:>8}",
        f"  requests {f['requests']}  retries {f['retries']}  "
        f"rate-limited {f['rate_limited']}  cache hits {f['cache_hits']}",
        f"  calls: conversation lists {f['listing_calls']}, messages {f['message_calls']}, "
        f"people {f['people_calls']}, operators {f['operator_calls']}",
    ]
    if ledger is not None:
        lines.append(f"  {ledger.line()}")
    lines += _set_aside(f)
    for label in ("errors", "warnings"):
        for website_id, items in f[label].items():
            lines += [f"  {label[:-1]} ({website_id}): {item}" for item in items]
    return "\n".join(lines)


def _set_aside(f: dict[str, Any]) -> list[str]:
    """What could not be stored as it came: rows put aside, rows stored with characters
    replaced (nothing when there is none, so the usual summary stays as it was)."""
    lines = []
    if f["quarantined"] or f["quarantine_held"]:
        lines.append(
            f"  quarantined    {f['quarantined']:>8} row(s) this run, {f['quarantine_held']} "
            "held in the quarantine table (their key cannot be stored; see crisp-sync --status)"
        )
    if f["replaced"]:
        lines.append(
            f"  replaced       {f['replaced']:>8} row(s) stored with characters the database "
            "cannot hold replaced (flagged: replaced)"
        )
    return lines


def _people_note(listed: int, websites: int) -> str:
    if listed == websites:
        return "listed in full"
    if not listed:
        return "not due: see --people-interval"
    return f"listed in full for {listed} of {websites} websites"


def _capped(items: Sequence[str]) -> list[str]:
    shown = list(items[:LISTED_ITEMS])
    if len(items) > LISTED_ITEMS:
        shown.append(f"... and {len(items) - LISTED_ITEMS} more")
    return shown


StatusRow = tuple[WebsiteStatus, Figures | None]
"""A website's status and the ledger of the credential its last complete run used."""

STATUS_COLUMNS: tuple[tuple[str, Callable[[StatusRow], str]], ...] = (
    ("website", lambda row: row[0].website_id),
    ("checkpoint (UTC)", lambda row: _utc(row[0].checkpoint_ms)),
    ("people listed (UTC)", lambda row: _utc(row[0].people_listed_ms)),
    ("quarantined", lambda row: str(row[0].quarantined)),
    ("last complete run (UTC)", lambda row: _utc(row[0].last_run_ms)),
    ("requests today", lambda row: "-" if row[1] is None else f"{row[1].requests_today:,}"),
    ("daily quota", lambda row: "-" if row[1] is None else (
        "unknown" if row[1].daily_quota is None else f"{row[1].daily_quota:,}")),
    ("quota spent until (UTC)", lambda row: "-" if row[1] is None or row[1].spent_until is None
     else utc(row[1].spent_until)),
)
"""The columns of ``crisp-sync --status``, in order: a header and how a website shows."""


def status_table(rows: Sequence[StatusRow]) -> str:
    """One line per website under a header, in columns as wide as their widest cell."""
    table = [[header for header, _ in STATUS_COLUMNS]]
    table += [[cell(row) for _, cell in STATUS_COLUMNS] for row in rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(STATUS_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _utc(epoch_ms: int | None) -> str:
    """An epoch in milliseconds as UTC ISO time to the millisecond; ``-`` for none."""
    if epoch_ms is None:
        return "-"
    seconds, millis = divmod(epoch_ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
