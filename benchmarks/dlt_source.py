"""Section 9: the dlt source (`crisp_api.dlt`) against crisp-sync into SQLite, on one website.

A fake Crisp in its own process holds ``dlt_conversations`` conversations of about 30 messages
and answers each request after ``dlt_latency_ms``. crisp-sync (the CLI, ``--workers 8``) copies
it into a fresh SQLite file, and the dlt source (`benchmarks.dlt_child`: a pipeline into a
fresh DuckDB file, ``workers=8``) does the same; then ``dlt_touched`` conversations get a new
message and both run again on their copies (0 leaves the incremental runs out). Each run is
a child process: the requests the fake received, its wall time and its CPU (user + system,
from ``wait4``, imports included).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from benchmarks.fleet import CLI_WORKERS, cli_environment
from benchmarks.sync_cpu import _child, _stored
from crisp_api.testing import FakeCrispProcess, Faults

SEED = 91
SYNC = "crisp-sync into SQLite"
DLT = "dlt source into DuckDB"
FIRST, INCREMENTAL = "first copy", "incremental"


@dataclass(frozen=True)
class DltRun:
    """One run of one contender."""

    contender: str
    run: str
    requests: int
    wall_s: float
    cpu_s: float
    complete: bool
    """The copy holds every message of the fake after the run."""


@dataclass(frozen=True)
class DltResult:
    """What section 9 measured."""

    conversations: int
    messages: int
    latency_ms: float
    touched: int
    workers: int
    runs: list[DltRun]


def run(config: Config) -> DltResult:
    """Both contenders' first copy, then their incremental run, against one fake process."""
    with (FakeCrispProcess(conversations=config.dlt_conversations, seed=SEED, rtm=False,
                           faults=Faults(latency_ms=config.dlt_latency_ms)) as fake,
          tempfile.TemporaryDirectory() as folder):
        work = Path(folder)
        subprocess.run(
            [sys.executable, "-c", "import crisp_api.sync.cli, benchmarks.dlt_child"],
            env=cli_environment(work), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            check=True, timeout=120,
        )
        runs: list[DltRun] = []
        truth = 0
        for name in (FIRST, INCREMENTAL) if config.dlt_touched else (FIRST,):
            print(f"benchmarks: the dlt source vs crisp-sync, {name}", file=sys.stderr)
            if name == INCREMENTAL:
                fake.touch_conversations(config.dlt_touched)
            truth = sum(len(t.messages) for t in fake.ground_truth().values())
            runs.append(_measure(fake, work, SYNC, name, truth))
            runs.append(_measure(fake, work, DLT, name, truth))
    return DltResult(conversations=config.dlt_conversations, messages=truth,
                     latency_ms=config.dlt_latency_ms, touched=config.dlt_touched,
                     workers=CLI_WORKERS, runs=runs)


def _measure(fake: FakeCrispProcess, work: Path, contender: str, name: str,
             truth: int) -> DltRun:
    """One child's run, with the requests the fake received for it."""
    database = work / "crisp.sqlite3"
    if contender == SYNC:
        command = [sys.executable, "-m", "crisp_api.sync.cli", "--db", str(database),
                   "--no-progress", "--website-id", fake.website_id,
                   "--workers", str(CLI_WORKERS)]
    else:
        command = [sys.executable, "-m", "benchmarks.dlt_child", str(work / "dlt"),
                   fake.website_id, str(CLI_WORKERS)]
    fake.reset_stats()
    started = time.monotonic()
    cpu, printed = _child(command, fake, work)
    wall = time.monotonic() - started
    held = _stored(database) if contender == SYNC else json.loads(printed)["messages"]
    return DltRun(contender, name, fake.stats.requests, wall, cpu, held == truth)
