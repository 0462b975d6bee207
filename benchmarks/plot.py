"""``plot.png``: one panel per section that ran, drawn with matplotlib's object API (no
pyplot, so no display or global state is needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks.rate_limit import RateRun
from benchmarks.results import Results
from benchmarks.targets import MAX_GROWTH_MB, MIN_RATE_FRACTION


def draw(results: Results, path: Path) -> None:
    """Write the panels of the sections in ``results`` to ``path`` (PNG)."""
    panels: list[Callable[[Axes], None]] = []
    if results.cpu is not None:
        panels.append(lambda axes: _cpu(axes, results))
    if results.sync is not None:
        panels.append(lambda axes: _sync(axes, results))
    if results.rate_limit:
        panels.append(lambda axes: _rate(axes, results.rate_limit))
    if results.memory is not None:
        panels.append(lambda axes: _memory(axes, results))
    columns = 2 if len(panels) > 1 else 1
    lines = max(1, (len(panels) + 1) // columns)
    figure = Figure(figsize=(8 * columns, 5 * lines), layout="constrained")
    grid = figure.subplots(lines, columns, squeeze=False)
    for axes, panel in zip(grid.flat, panels, strict=False):
        panel(axes)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_visible(False)
    figure.suptitle(f"crisp-api benchmarks ({results.machine.get('CPU', '?')}, cores: "
                    f"{results.machine.get('cores', '?')}, {results.started})")
    figure.savefig(path, dpi=100)


def _cpu(axes: Axes, results: Results) -> None:
    assert results.cpu is not None
    rows = results.cpu.rows
    names = [row.name for row in rows]
    values = [row.cpu_us for row in rows]
    bars = axes.barh(names, values, color="tab:blue")
    axes.bar_label(bars, labels=[f"{value:,.1f}" for value in values], padding=3, fontsize=8)
    axes.set_xscale("log")
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=8)
    axes.set_xlabel("client CPU µs per request (median, log scale)")
    axes.set_title("1. CPU per request, one thread, loopback")


def _sync(axes: Axes, results: Results) -> None:
    assert results.sync is not None
    for latency in sorted({run.latency_ms for run in results.sync.runs}):
        runs = sorted((r for r in results.sync.runs if r.latency_ms == latency),
                      key=lambda r: r.workers)
        axes.plot([r.workers for r in runs], [r.conversations_per_s for r in runs],
                  marker="o", label=f"{latency:g} ms latency")
    workers = sorted({run.workers for run in results.sync.runs})
    axes.set_xscale("log", base=2)
    axes.set_xticks(workers, [str(w) for w in workers])
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("workers")
    axes.set_ylabel("conversations/s")
    axes.set_title(f"2. sync throughput ({results.sync.conversations:,} conversations)")
    axes.legend()


def _rate(axes: Axes, runs: list[RateRun]) -> None:
    names = [f"{run.client}\n{run.throttled} 429s, "
             f"{run.conversations_lost + run.messages_lost} lost" for run in runs]
    values = [run.fraction_of_rate * 100 for run in runs]
    bars = axes.bar(names, values, color="tab:green")
    axes.bar_label(bars, labels=[f"{value:.1f}%" for value in values])
    axes.axhline(MIN_RATE_FRACTION * 100, color="tab:red", linestyle="--", label="target")
    axes.set_ylim(0, 110)
    axes.set_ylabel(f"% of R = {runs[0].rate:g} requests/s achieved")
    axes.set_title("3. sync under a server rate limit")
    axes.legend()


def _memory(axes: Axes, results: Results) -> None:
    memory = results.memory
    assert memory is not None
    axes.plot([s[0] for s in memory.samples], [s[1] for s in memory.samples])
    axes.axvline(memory.warmup_requests, color="gray", linestyle=":", label="end of warm-up")
    axes.axhline(memory.rss_warm_mb + MAX_GROWTH_MB, color="tab:red", linestyle="--",
                 label=f"warm-up RSS + {MAX_GROWTH_MB:g} MB")
    axes.set_ylim(0, max(memory.rss_peak_mb, memory.rss_warm_mb + MAX_GROWTH_MB) * 1.1)
    axes.set_xlabel("requests")
    axes.set_ylabel("client RSS, MB")
    axes.set_title(f"4. memory over {memory.requests:,} requests (cache on)")
    axes.legend()
