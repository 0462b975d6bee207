"""Everything one run measured, and its JSON form (``results.json``)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from benchmarks.config import Config
from benchmarks.cpu import CpuResult
from benchmarks.dlt_source import DltResult
from benchmarks.fleet import FleetResult, redact
from benchmarks.follow import FollowResult
from benchmarks.memory import MemoryResult
from benchmarks.quota_days import QuotaDays
from benchmarks.rate_limit import ChangingLimit, RateRun, RetryAfterRun, SpentRun
from benchmarks.soak import SoakResult
from benchmarks.sync_cpu import FloorResult
from benchmarks.throughput import SyncResult


@dataclass
class Results:
    """The sections that ran (``None`` for those that did not), with their context."""

    config: Config
    machine: dict[str, str]
    started: str
    command: str
    seconds: float = 0.0
    cpu: CpuResult | None = None
    sync: SyncResult | None = None
    rate_limit: list[RateRun] = field(default_factory=list)
    changing_limit: ChangingLimit | None = None
    retry_after: list[RetryAfterRun] = field(default_factory=list)
    quota_spent: SpentRun | None = None
    quota_days: QuotaDays | None = None
    memory: MemoryResult | None = None
    follow: FollowResult | None = None
    fleet: FleetResult | None = None
    soak: SoakResult | None = None
    floor: FloorResult | None = None
    dlt: DltResult | None = None

    def to_json(self) -> str:
        """Indented JSON; NaN (a figure that could not be computed) becomes null. A
        PostgreSQL URL's password is left out."""
        plain = dataclasses.asdict(self)
        if self.config.postgres_url is not None:
            plain["config"]["postgres_url"] = redact(self.config.postgres_url)
        return json.dumps(_plain(plain), indent=2) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
