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
        f"  ({message_total / seconds:,.0f} messages/s)",
        f"  people         added {people.added:>8}  updated {people.updated:>8}",
        f"  operators      added {operators.added:>8}  updated {operators.updated:>8}",
        f"  requests {counts.requests}  retries {counts.retries}  "
        f"rate-limited {counts.rate_limited}  cache hits {counts.cache_hits}",
    ]
    for report in reports:
        for error in report.errors[:5]:
            lines.append(f"  error ({report.website_id}): {error}")
        if len(report.errors) > 5:
            lines.append(f"  ... and {len(report.errors) - 5} more errors")
    return "\n".join(lines)
