"""The summary `crisp-sync` gives when it finishes: a few lines of text, or (under
``--log-format json``) the same figures as the fields of one event (`summary_fields`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crisp_api.sync.engine import SyncReport
from crisp_api.sync.metrics import Counts
from crisp_api.sync.store import Changes

LISTED_ITEMS = 5
"""Errors and warnings listed per website; the rest are counted."""


def summary_fields(reports: Sequence[SyncReport], counts: Counts,
                   elapsed: float) -> dict[str, Any]:
    """What changed, at what rate, and what it cost, as named figures."""
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
    return fields


def summary(reports: Sequence[SyncReport], counts: Counts, elapsed: float) -> str:
    """The figures of `summary_fields` as a few human-readable lines."""
    f = summary_fields(reports, counts, elapsed)
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
    for label in ("errors", "warnings"):
        for website_id, items in f[label].items():
            lines += [f"  {label[:-1]} ({website_id}): {item}" for item in items]
    return "\n".join(lines)


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
