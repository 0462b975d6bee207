"""The benchmark harness runs end to end on a tiny configuration and writes its report.

No timing is asserted: this machine is too noisy for that, and the figures are the harness's
business. What is checked is that ``python -m benchmarks`` works as documented and that its
report holds a row for every contender, configuration and target.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import contenders, pg_methods, sync_cpu
from benchmarks.fleet import STARTS
from benchmarks.rate_limit import ADAPTIVE, CONFIGURED, INCIDENTAL, REAL_LIMIT

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--quick", "--no-original", "--rounds", "2", "--batch", "50", "--warmup", "20",
    "--sync-conversations", "40", "--sync-workers", "1,16", "--sync-latencies", "0,50",
    "--sync-seconds", "0.5", "--rate", "100", "--rate-conversations", "20",
    "--default-conversations", "20", "--changing-seconds", "1", "--retry-after-calls", "40",
    "--spent-quota", "0", "--quota-days-conversations", "0", "--memory-requests", "2000",
    "--follow-conversations", "10", "--follow-seconds", "0.5", "--drop-seconds", "1",
    "--drop-every", "0.5", "--drop-interval", "0.5", "--quiet-seconds", "0.5",
    "--quiet-interval", "0.5", "--repair-touched", "1", "--repair-interval", "0.5",
    "--store-conversations", "10", "--store-messages", "5",
    "--store-rounds", "1",
    "--fleet-websites", "2", "--fleet-processes", "2", "--fleet-conversations", "3",
    "--fleet-messages", "2", "--fleet-slow-latency", "100", "--fleet-slow-conversations", "2",
    "--fleet-slow-messages", "1", "--lease-ttl", "3", "--takeover-conversations", "20",
    "--soak-seconds", "3", "--soak-interval", "1", "--soak-conversations", "10",
    "--floor-conversations", "10", "--floor-rounds", "1",
    "--dlt-conversations", "5", "--dlt-latency", "0", "--dlt-touched", "0",
]


HALVES = ("cpu,sync,ratelimit,memory,follow", "fleet,soak,floor,dlt")
"""Every section, in two harness runs at once: the sections wait on their fakes and
subprocesses more than they compute, and one run of them all took a minute and a half."""


def test_the_harness_writes_its_table_json_and_plot(tmp_path: Path) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", *TINY, "--sections", sections,
             "--output", str(tmp_path / str(number))],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for number, sections in enumerate(HALVES)
    ]
    try:
        finished = [run.communicate(timeout=180) for run in runs]
    finally:
        for run in runs:
            run.kill()
    reports, results = [], {}
    for number, (run, (printed, errors)) in enumerate(zip(runs, finished, strict=True)):
        assert run.returncode == 0, errors[-2000:]
        output = tmp_path / str(number)
        reports.append((output / "results.md").read_text(encoding="utf-8"))
        assert printed.strip() == reports[-1].strip()
        assert (output / "plot.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        half = json.loads((output / "results.json").read_text(encoding="utf-8"))
        assert half["config"]["quick"] is True
        # A section a half did not run is null (or an empty list) in its results.
        results.update({key: value for key, value in half.items() if value})
    report = "\n".join(reports)

    rows = {line.split(" | ")[0].strip("| ") for line in report.splitlines()
            if line.startswith("| ")}
    expected = {
        contenders.URLLIB3, contenders.HTTPX, contenders.DEFAULT, contenders.HIT,
        *(contenders.without(layer) for layer in contenders.LAYERS), *contenders.LAYERS,
        "0 ms", "50 ms", CONFIGURED, ADAPTIVE, "phase 1", "phase 2", "whole run", "2,000",
        INCIDENTAL, REAL_LIMIT,
        "CPU", "Python", "urllib3",
    }
    assert expected <= rows
    assert "Quick run" in report
    assert "## 5. Follow mode" in report
    assert results["follow"]["latency"]["sent"] > 0
    repair = results["follow"]["repair"]
    assert repair["exact"]
    assert repair["exit_status"] == 0
    assert [kind["touched"] for kind in repair["kinds"]] == [1, 1, 1, 1]
    assert all(kind["rechecked"] + kind["covered"] >= 1 for kind in repair["kinds"])
    assert "## 6. PostgreSQL and the fleet" in report
    fleet = results["fleet"]
    assert "SQLite" in rows
    for store in fleet["stores"]:  # every row written once, then none when unchanged
        assert [(p["written"], q["written"]) for p, q in zip(
            store["inserts"], store["unchanged"], strict=True)] == [(10 * 5, 0)]
    if fleet["postgres_missing"] is None:  # CI installs PostgreSQL; elsewhere it may be missing
        assert {"PostgreSQL", "issue's configuration", "latency-dominated", "3"} <= rows
        assert [(run["start"], run["fleet"]["processes"]) for run in fleet["speedups"]] == [
            (start, 2) for _ in ("50 ms", "100 ms") for start in STARTS]
        assert "fleet: 2 processes >= 3.5x one at 50 ms per answer (credential known" in report
        assert all(run["single"]["complete"] and run["fleet"]["complete"]
                   for run in fleet["speedups"])
        for run in fleet["speedups"]:  # the schedule model's bound, with the runs' own phases
            modelled = run["model"]
            assert modelled["whole_worst"] <= modelled["whole"]
            assert modelled["whole"] <= modelled["balanced"] * (1 + 1e-9)  # equal: two sums
        assert report.count("The schedule model (`benchmarks.fleet_model`") == 4
        assert fleet["takeover"]["ttl_s"] == 3
        assert {pg_methods.STORE, pg_methods.TRANSACTION, pg_methods.PIPELINE,
                pg_methods.EXECUTEMANY, pg_methods.COPY} <= rows
        for method in fleet["methods"]:  # every way writes every row, then none
            assert method["written"] == [[10 * 5, 0]]
    else:
        assert "PostgreSQL is not available" in report
    assert "## 8. crisp-sync's CPU against the floor" in report
    assert "## 9. The dlt source against crisp-sync" in report
    assert all(run["complete"] for run in results["dlt"]["runs"])
    assert {sync_cpu.SYNC, sync_cpu.FLOOR} <= rows
    assert results["floor"]["complete"]
    assert "## 7. Follow soak" in report
    soak = results["soak"]
    assert soak["sent"] > 0
    assert soak["exact"]
    assert soak["exit_status"] == 0
    assert soak["rss_end_mb"] > 0
    for target in ("bare urllib3", "cache hit", "original client", "16 workers",
                   "rate limit", "unknown changing limit", "a spent daily quota", "RSS growth",
                   "event-to-store latency", "sockets dropped", "quiet day", "repair requests",
                   "follow soak"):
        assert any(target in line and line.endswith(("PASS** |", "MISS** |", "not run** |"))
                   for line in report.splitlines()), target
