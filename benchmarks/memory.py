"""Section 4: the RSS of a client process over many requests (cache on) stays flat.

The client runs in a process of its own (`benchmarks.memory_worker`), so nothing the harness
holds counts, and the fake Crisp in another. The first tenth of the requests is warm-up (the
cache fills, pools and interpreter caches settle); growth is the highest RSS seen after it
less the RSS at its end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from crisp_api.testing import FakeCrispProcess

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 200
WARMUP_SHARE = 0.1
MB = 1_000_000


@dataclass(frozen=True)
class MemoryResult:
    """What section 4 measured (sizes in MB of 10^6 bytes)."""

    requests: int
    seconds: float
    requests_per_s: float
    warmup_requests: int
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    growth_mb: float
    samples: list[list[float]]


def run(config: Config) -> MemoryResult:
    """One client process doing ``memory_requests`` requests against a fake Crisp."""
    print(f"benchmarks: memory, {config.memory_requests:,} requests", file=sys.stderr)
    with FakeCrispProcess(conversations=20, messages=5, rtm=False) as fake:
        setup = {"url": fake.url, "identifier": fake.identifier, "key": fake.key,
                 "website_id": fake.website_id, "requests": config.memory_requests,
                 "samples": SAMPLES}
        worker = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory_worker"],
            input=json.dumps(setup) + "\n", stdout=subprocess.PIPE, text=True, cwd=ROOT,
            check=True,
        )
    samples: list[list[float]] = json.loads(worker.stdout)["samples"]
    return _summarise(samples, config.memory_requests)


def _summarise(samples: list[list[float]], requests: int) -> MemoryResult:
    warm_at = next(i for i, s in enumerate(samples) if s[0] >= requests * WARMUP_SHARE)
    rss = [kib * 1024 / MB for _, kib, _ in samples]
    warm, after = rss[warm_at], rss[warm_at:]
    seconds = samples[-1][2]
    return MemoryResult(
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds if seconds else float("nan"),
        warmup_requests=int(samples[warm_at][0]),
        rss_start_mb=rss[0],
        rss_warm_mb=warm,
        rss_end_mb=rss[-1],
        rss_peak_mb=max(after),
        growth_mb=max(after) - warm,
        samples=[[s[0], round(r, 2)] for s, r in zip(samples, rss, strict=True)],
    )
