"""Section 8: crisp-sync's CPU per message against the floor, and per unchanged conversation.

One fake Crisp in its own process holds ``floor_conversations`` conversations of about
``floor_messages`` messages. In each of ``floor_rounds`` rounds (the order of the two copies
alternating), the real CLI, ``crisp-sync --workers 8`` into a fresh SQLite file, and the floor
(`benchmarks.floor`: urllib3 + json + sqlite3, 8 threads, one connection under a lock, one
transaction per conversation, no retries or checks) each copy the website as child processes;
their CPU (user + system, from ``wait4``, imports included for both) per message copied, and
crisp-sync's over the floor's, the median of the per-round ratios. crisp-sync parses and writes
JSON with orjson when the ``fast`` extra is installed (`crisp_api.json_codec`); a third copy
each round, crisp-sync with the standard library's JSON alone, says what the extra is worth.

**Incremental runs.** After its copy, crisp-sync runs again on the same file, once with the
website's checkpoint cleared, so that every conversation is listed again and found unchanged,
and once as it was left (the listing finds nothing new); between the two, the floor lists
every conversation and nothing else. These runs' CPU is the process's around the CLI's
``main`` (its imports, some 0.3 s that vary by a few hundredths from run to run, as much as
the whole difference, are left out, as the floor's listing figure leaves out its own). The
difference of the two runs' CPU, per conversation, is what an unchanged conversation costs
beyond a run's fixed costs; it is compared with the cost of one listing entry, the CPU of the
floor's listing loop per entry, measured in the same seconds: this machine's speed drifts by
a third within a minute, as much as the ratio's distance to 1. Each round takes
`INCREMENTAL_SAMPLES` such triples, and the verdict is the median ratio of all of them.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from benchmarks.fleet import CLI_WORKERS, cli_environment
from benchmarks.stats import median, paired_ratios
from crisp_api import json_codec
from crisp_api.testing import FakeCrispProcess

SEED = 81
TIMEOUT_S = 900.0
"""A child still running by then is killed, and the section fails."""
POLL_S = 0.01
FLOOR = "floor (urllib3 + json + sqlite3)"
SYNC = "crisp-sync"
SYNC_STDLIB = "crisp-sync, standard json"
INCREMENTAL_SAMPLES = 4
"""Relisted runs, floor listings and quiet runs a round (see the module docstring)."""
_TIMED_MAIN = ("import sys, time; from crisp_api.sync.cli import main; began = time.process_time();"
               " status = main(sys.argv[1:]); print(f'cpu_s={time.process_time() - began}');"
               " raise SystemExit(status)")
"""crisp-sync, printing the CPU seconds its ``main`` took (its imports left out)."""
_STDLIB_JSON = ("from crisp_api import json_codec; json_codec.use_fast(False); "
                "from crisp_api.sync.cli import main; raise SystemExit(main())")
"""crisp-sync with the standard library's JSON (without the ``fast`` extra's orjson)."""


@dataclass(frozen=True)
class FloorResult:
    """What section 8 measured: CPU seconds and µs per message of each copy, by round."""

    conversations: int
    messages: int
    workers: int
    sync_cpu_s: list[float]
    floor_cpu_s: list[float]
    stdlib_cpu_s: list[float]
    """crisp-sync with the standard library's JSON alone."""
    fast_json: bool
    """Whether crisp-sync ran with orjson (the ``fast`` extra installed)."""
    sync_us_per_message: float
    floor_us_per_message: float
    stdlib_us_per_message: float
    sync_vs_floor: float
    stdlib_vs_floor: float
    complete: bool
    """Every round's copies both hold every message of the fake."""
    relisted_cpu_s: list[float]
    quiet_cpu_s: list[float]
    unchanged_us: float
    """crisp-sync's CPU per unchanged conversation listed again (relisted - quiet runs)."""
    listing_entry_us: float
    """The floor's CPU per listing entry (its listing loop alone)."""
    unchanged_vs_entry: float


def run(config: Config) -> FloorResult:
    """The rounds, against one fake Crisp process."""
    with (FakeCrispProcess(conversations=config.floor_conversations,
                           messages=config.floor_messages, seed=SEED, rtm=False) as fake,
          tempfile.TemporaryDirectory() as folder):
        work = Path(folder)
        truth = sum(len(t.messages) for t in fake.ground_truth().values())
        _warm(work)
        sync_cpu: list[float] = []
        floor_cpu: list[float] = []
        stdlib_cpu: list[float] = []
        relisted: list[float] = []
        quiet: list[float] = []
        samples: list[tuple[float, float]] = []
        complete = True
        for number in range(config.floor_rounds):
            print(f"benchmarks: crisp-sync vs the floor, round {number + 1}/"
                  f"{config.floor_rounds}", file=sys.stderr)
            order = ("sync", "floor", "stdlib") if number % 2 == 0 else ("stdlib", "floor", "sync")
            for name in order:
                path = work / f"{name}-{number}.sqlite3"
                if name == "stdlib":
                    cpu, _ = _child(_sync_command(fake, path, ("-c", _STDLIB_JSON)), fake, work)
                    stdlib_cpu.append(cpu)
                    complete &= _stored(path) == truth
                elif name == "sync":
                    cpu, _ = _child(_sync_command(fake, path), fake, work)
                    sync_cpu.append(cpu)
                    complete &= _stored(path) == truth
                    runs = [_incremental(fake, path, work, config.floor_conversations)
                            for _ in range(INCREMENTAL_SAMPLES)]
                    samples += [(unchanged, entry) for _, _, unchanged, entry in runs]
                    again, nothing, _, _ = sorted(runs, key=lambda run: run[2] / max(run[3], 1e-9))[
                        len(runs) // 2]
                    relisted.append(again)
                    quiet.append(nothing)
                else:
                    cpu, printed = _child(_floor_command(fake, str(path)), fake, work)
                    floor_cpu.append(cpu)
                    complete &= json.loads(printed)["messages"] == truth
    per = 1e6 / max(1, truth)
    unchanged = [unchanged for unchanged, _ in samples]
    listing = [entry for _, entry in samples]
    return FloorResult(
        conversations=config.floor_conversations, messages=truth, workers=CLI_WORKERS,
        sync_cpu_s=sync_cpu, floor_cpu_s=floor_cpu, stdlib_cpu_s=stdlib_cpu,
        fast_json=json_codec.FAST,
        sync_us_per_message=median(sync_cpu) * per,
        floor_us_per_message=median(floor_cpu) * per,
        stdlib_us_per_message=median(stdlib_cpu) * per,
        sync_vs_floor=median(paired_ratios(sync_cpu, floor_cpu)),
        stdlib_vs_floor=median(paired_ratios(stdlib_cpu, floor_cpu)),
        complete=complete, relisted_cpu_s=relisted, quiet_cpu_s=quiet,
        unchanged_us=median(unchanged), listing_entry_us=median(listing),
        unchanged_vs_entry=median(paired_ratios(unchanged, listing)),
    )


def _incremental(fake: FakeCrispProcess, path: Path, work: Path, conversations: int
                 ) -> tuple[float, float, float, float]:
    """One triple (see the module docstring): the relisted and quiet runs' CPU seconds, the
    µs per unchanged conversation, and the floor's µs per listing entry."""
    _clear_checkpoint(path)
    again = _timed_main(fake, path, work)
    _, printed = _child(_floor_command(fake, "--list-only"), fake, work)
    found = json.loads(printed)
    entry = found["listing_cpu_s"] / max(1, found["entries"]) * 1e6
    nothing = _timed_main(fake, path, work)
    return again, nothing, (again - nothing) / conversations * 1e6, entry


def _timed_main(fake: FakeCrispProcess, path: Path, work: Path) -> float:
    """The CPU seconds of crisp-sync's ``main`` in a run on ``path`` (its imports left out)."""
    _, printed = _child(_sync_command(fake, path, ("-c", _TIMED_MAIN)), fake, work)
    return float(printed.rstrip().rsplit("\n", 1)[-1].removeprefix("cpu_s="))


def _sync_command(fake: FakeCrispProcess, path: Path,
                  program: tuple[str, str] = ("-m", "crisp_api.sync.cli")) -> list[str]:
    """crisp-sync's command line (``program``: how Python runs its CLI) copying into
    ``path``."""
    return [sys.executable, *program, "--db", str(path), "--no-progress",
            "--website-id", fake.website_id, "--workers", str(CLI_WORKERS)]


def _floor_command(fake: FakeCrispProcess, target: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.floor", fake.url, fake.identifier, fake.key,
            fake.tier, fake.website_id, target]


def _warm(work: Path) -> None:
    """Compile both programs' modules into the children's bytecode cache, before timing."""
    subprocess.run(
        [sys.executable, "-c", "import crisp_api.sync.cli, benchmarks.floor"],
        env=cli_environment(work), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        check=True, timeout=120,
    )


def _child(command: list[str], fake: FakeCrispProcess, work: Path) -> tuple[float, str]:
    """Run ``command`` as a child to its end; its CPU seconds (``wait4``) and its output.
    A child that fails stops the section (its figures would mean nothing)."""
    environment = cli_environment(work)
    environment.update(CRISP_IDENTIFIER=fake.identifier, CRISP_KEY=fake.key,
                       CRISP_REST_HOST=fake.url, CRISP_TIER=fake.tier)
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, env=environment, stdin=subprocess.DEVNULL,
                                 stdout=output, stderr=errors)
        try:
            status, usage = _reap(child)
        except BaseException:
            child.kill()
            raise
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        errors.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{command[2]} exited with {child.returncode}: "
                               + errors.read().decode(errors="replace")[-1000:])
        return usage.ru_utime + usage.ru_stime, output.read().decode()


def _reap(child: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """Wait for ``child`` (``wait4``, for its CPU time); `TimeoutError` after `TIMEOUT_S`."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            return status, usage
        time.sleep(POLL_S)
    raise TimeoutError(f"{child.args!r} still running after {TIMEOUT_S:g} s")


def _stored(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])


def _clear_checkpoint(path: Path) -> None:
    """Have the next run list every conversation again (each found unchanged)."""
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute("UPDATE sync_state SET checkpoint_ms = NULL")
    finally:
        db.close()
