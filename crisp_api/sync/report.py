"""The summary `crisp-sync` prints when it finishes."""

from __future__ import annotations

from collections.abc import Sequence

from crisp_api.sync.engine import SyncReport
from crisp_api.sync.metrics import Counts
from crisp_api.sync.store import Changes


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
    for report in reports:
        lines += _capped(f"error ({report.website_id})", report.errors)
        lines += _capped(f"warning ({report.website_id})", report.warnings)
    return "\n".join(lines)


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
