"""``plot.png``: one panel per section that ran, drawn with matplotlib's object API (no
pyplot, so no display or global state is needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from benchmarks.rate_limit import ADAPTIVE, CONFIGURED, ChangingLimit, RateRun
from benchmarks.results import Results
from benchmarks.soak import MAX_GROWTH_MB as MAX_SOAK_GROWTH_MB
from benchmarks.targets import MAX_GROWTH_MB, MIN_ADAPTIVE_FRACTION, MIN_RATE_FRACTION


def draw(results: Results, path: Path) -> None:
    """Write the panels of the sections in ``results`` to ``path`` (PNG)."""
    panels: list[Callable[[Axes], None]] = []
    if results.cpu is not None:
        panels.append(lambda axes: _cpu(axes, results))
    if results.sync is not None:
        panels.append(lambda axes: _sync(axes, results))
    if results.rate_limit or results.changing_limit is not None:
        panels.append(lambda axes: _rate(axes, results.rate_limit, results.changing_limit))
    if results.memory is not None:
        panels.append(lambda axes: _memory(axes, results))
    if results.soak is not None:
        panels.append(lambda axes: _soak(axes, results))
    columns = 2 if len(panels) > 1 else 1
    lines = max(1, -(-len(panels) // columns))
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


def _rate(axes: Axes, runs: list[RateRun], changing: ChangingLimit | None) -> None:
    """One bar per sync (% of R) and per phase of the changing limit (% of its rate), each
    with its goal: the target for the configured client, 90% for the default (adaptive)."""
    bars = [(f"{run.client}\nsync, R = {run.rate:g}/s", run.fraction_of_rate,
             run.throttled_share, run.client == CONFIGURED) for run in runs]
    if changing is not None:
        bars += [(f"{ADAPTIVE}\nchanging limit, {phase.allowed_per_s:g}/s\n(steady state)",
                  phase.fraction_of_allowed, phase.throttled_share, False)
                 for phase in changing.phases]
    places = range(len(bars))
    drawn = axes.bar(places, [bar[1] * 100 for bar in bars],
                     color=["tab:green" if bar[3] else "tab:blue" for bar in bars])
    axes.bar_label(drawn, labels=[f"{bar[1]:.1%}\n{bar[2]:.1%} 429" for bar in bars],
                   fontsize=8)
    labelled: set[bool] = set()
    for place, (_, _, _, configured) in zip(places, bars, strict=True):
        goal = MIN_RATE_FRACTION if configured else MIN_ADAPTIVE_FRACTION
        label = "target (configured)" if configured else "goal (adaptive)"
        axes.hlines(goal * 100, place - 0.4, place + 0.4, color="tab:red",
                    linestyles="--" if configured else ":",
                    label="_nolegend_" if configured in labelled else label)
        labelled.add(configured)
    axes.set_xticks(list(places), [bar[0] for bar in bars], fontsize=8)
    axes.set_ylim(0, 125)
    axes.set_ylabel("% of the allowed rate achieved")
    axes.set_title("3. under a server rate limit")
    axes.legend(loc="lower right")


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


def _soak(axes: Axes, results: Results) -> None:
    soak = results.soak
    assert soak is not None
    minutes = [s[0] / 60 for s in soak.samples]
    axes.plot(minutes, [s[1] for s in soak.samples])
    axes.axvline(soak.warmup_s / 60, color="gray", linestyle=":", label="end of warm-up")
    axes.axhline(soak.rss_warm_mb + MAX_SOAK_GROWTH_MB, color="tab:red", linestyle="--",
                 label=f"warm-up RSS + {MAX_SOAK_GROWTH_MB:g} MB")
    axes.set_ylim(0, max(soak.rss_peak_mb, soak.rss_warm_mb + MAX_SOAK_GROWTH_MB) * 1.1)
    axes.set_xlabel("minutes of live events")
    axes.set_ylabel("crisp-sync RSS, MB")
    axes.set_title(f"7. follow soak, {soak.achieved_rate:.0f} events/s, reconciling every "
                   f"{soak.interval_s:g} s")
    axes.legend()
