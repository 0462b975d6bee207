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

from benchmarks import contenders
from benchmarks.rate_limit import ADAPTIVE, CONFIGURED

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--quick", "--no-original", "--rounds", "2", "--batch", "50", "--warmup", "20",
    "--sync-conversations", "120", "--sync-workers", "1,16", "--sync-latencies", "0,50",
    "--sync-seconds", "0.5", "--rate", "100", "--rate-conversations", "20",
    "--default-conversations", "20", "--changing-seconds", "2", "--memory-requests", "2000",
    "--follow-conversations", "10", "--follow-seconds", "0.5", "--drop-seconds", "1",
    "--drop-every", "0.5", "--drop-interval", "1", "--quiet-seconds", "1",
    "--quiet-interval", "1",
]


def test_the_harness_writes_its_table_json_and_plot(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks", *TINY, "--output", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert finished.stdout.strip() == report.strip()
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["config"]["quick"] is True

    rows = {line.split(" | ")[0].strip("| ") for line in report.splitlines()
            if line.startswith("| ")}
    expected = {
        contenders.URLLIB3, contenders.HTTPX, contenders.DEFAULT, contenders.HIT,
        *(contenders.without(layer) for layer in contenders.LAYERS), *contenders.LAYERS,
        "0 ms", "50 ms", CONFIGURED, ADAPTIVE, "phase 1", "phase 2", "whole run", "2,000",
        "CPU", "Python", "urllib3",
    }
    assert expected <= rows
    assert "Quick run" in report
    assert "## 5. Follow mode" in report
    assert results["follow"]["latency"]["sent"] > 0
    for target in ("bare urllib3", "cache hit", "original client", "16 workers",
                   "rate limit", "unknown changing limit", "RSS growth",
                   "event-to-store latency", "sockets dropped", "quiet day"):
        assert any(target in line and line.endswith(("PASS** |", "MISS** |", "not run** |"))
                   for line in report.splitlines()), target
