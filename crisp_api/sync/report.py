"""What `crisp-sync` prints: the summary of a run, and the status of a database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from crisp_api.sync.engine import SyncReport
from crisp_api.sync.metrics import Counts
from crisp_api.sync.store import Changes, WebsiteStatus


def summary(reports: Sequence[SyncReport], counts: Counts, elapsed: float) -> str:
    """A few human-readable lines: what changed, at what rate, and what it cost."""
    conversations = sum((r.conversations for r in reports), Changes())
    messages = sum((r.messages for r in reports), Changes())
    people = sum((r.people for r in reports), Changes())
    operators = sum((r.operators for r in reports), Changes())
    seconds = max(elapsed, 1e-9)
    fetched = sum(r.conversations_fetched for r in reports)
    message_total = messages.added + messages.updated
    complete = all(r.complete for r in reports)
    lines = [
        f"crisp-sync: {len(reports)} website(s) {'complete' if complete else 'INCOMPLETE'} "
        f"in {elapsed:.1f} s",
        f"  conversations  added {conversations.added:>8}  updated {conversations.updated:>8}"
        f"  ({fetched / seconds:,.0f} conversations/s)",
        f"  messages       added {messages.added:>8}  updated {messages.updated:>8}"
        f"  removed {messages.removed:>6}  ({message_total / seconds:,.0f} messages/s)",
        f"  people         added {people.added:>8}  updated {people.updated:>8}"
        f"  ({_people_note(reports)})",
        f"  operators      added {operators.added:>8}  updated {operators.updated:>8}",
        f"  requests {counts.requests}  retries {counts.retries}  "
        f"rate-limited {counts.rate_limited}  cache hits {counts.cache_hits}",
        f"  calls: conversation lists {sum(r.listing_calls for r in reports)}, "
        f"messages {sum(r.message_calls for r in reports)}, "
        f"people {sum(r.people_calls for r in reports)}, operators {len(reports)}",
    ]
    lines += _set_aside(reports, messages + conversations + people + operators)
    for report in reports:
        lines += _capped(f"error ({report.website_id})", report.errors)
        lines += _capped(f"warning ({report.website_id})", report.warnings)
    return "\n".join(lines)


def _set_aside(reports: Sequence[SyncReport], changes: Changes) -> list[str]:
    """What could not be stored as it came: rows put aside, rows stored with characters
    replaced (nothing when there is none, so the usual summary stays as it was)."""
    held = sum(r.quarantine_held or 0 for r in reports)
    lines = []
    if changes.quarantined or held:
        lines.append(
            f"  quarantined    {changes.quarantined:>8} row(s) this run, {held} held in the "
            "quarantine table (their key cannot be stored; see crisp-sync --status)"
        )
    if changes.replaced:
        lines.append(
            f"  replaced       {changes.replaced:>8} row(s) stored with characters the database "
            "cannot hold replaced (flagged: replaced)"
        )
    return lines


def _people_note(reports: Sequence[SyncReport]) -> str:
    listed = sum(r.people_listed for r in reports)
    if listed == len(reports):
        return "listed in full"
    if not listed:
        return "not due: see --people-interval"
    return f"listed in full for {listed} of {len(reports)} websites"


def _capped(label: str, items: Sequence[str], limit: int = 5) -> list[str]:
    lines = [f"  {label}: {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


STATUS_COLUMNS: tuple[tuple[str, Callable[[WebsiteStatus], str]], ...] = (
    ("website", lambda status: status.website_id),
    ("checkpoint (UTC)", lambda status: _utc(status.checkpoint_ms)),
    ("people listed (UTC)", lambda status: _utc(status.people_listed_ms)),
    ("quarantined", lambda status: str(status.quarantined)),
)
"""The columns of ``crisp-sync --status``, in order: a header and how a website shows."""


def status_table(statuses: Sequence[WebsiteStatus]) -> str:
    """One line per website under a header, in columns as wide as their widest cell."""
    table = [[header for header, _ in STATUS_COLUMNS]]
    table += [[cell(status) for _, cell in STATUS_COLUMNS] for status in statuses]
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
