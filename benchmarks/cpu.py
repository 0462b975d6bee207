"""Section 1: client CPU per request, and requests/s, one thread, keep-alive loopback.

Every contender sends batches of ``GET /v1/website/{id}?n=<n>`` to one fake Crisp running in
another process. After a warm-up batch each, the contenders take turns in rounds, the order
rotating every round, so drifts of the machine hit all of them alike. Within a round they take
turns too, `CHUNKS` times, each sending that share of its batch: a whole batch per turn put
several seconds between two contenders' figures of one round, in which a busy machine
changes; turns of a fraction of a second make the per-round ratios far steadier. A
contender's figure is the median over rounds; its ratio to bare urllib3 is the median of the
per-round ratios.

The original client races in a race of its own, beside bare urllib3 and our default stack:
it opens a connection per request, and the closed connections it leaves (thousands a
round) made every contender after it slower, ours more than bare urllib3 (1.17x against
1.09x for the default stack in one run, the same machine, the same hour).

A layer costs a few microseconds of a request's few hundred, less than the wire's noise, so
the stacks are raced a second time without the network: an innermost layer answers each
request with a copy of a real answer. That isolates the client's own CPU and each layer's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from benchmarks import contenders, original
from benchmarks.config import Config
from benchmarks.contenders import Batch, Contender, Target
from benchmarks.stats import median, paired_differences, paired_ratios
from crisp_api.testing import FakeCrispProcess

CHUNKS = 5
"""Turns each contender takes within a round (see the module docstring)."""

SERVER = (
    "fake Crisp (`python -m crisp_api.testing`, asyncio HTTP/1.1) in its own process, "
    "one keep-alive loopback connection per contender"
)


@dataclass(frozen=True)
class Row:
    """One contender's figures (CPU in microseconds of the client thread per request)."""

    name: str
    cpu_us: float
    requests_per_s: float
    vs_urllib3: float
    cpu_us_rounds: list[float]


@dataclass(frozen=True)
class CpuResult:
    """What section 1 measured."""

    rounds: int
    batch: int
    server: str
    rows: list[Row]
    layer_cost_us: dict[str, float]
    offline_us: dict[str, float]
    layer_cost_offline_us: dict[str, float]
    original_vs_default: float | None
    original_versions: dict[str, str] = field(default_factory=dict)

    def row(self, name: str) -> Row | None:
        """The row of contender ``name``, if it ran."""
        return next((row for row in self.rows if row.name == name), None)


def run(config: Config) -> CpuResult:
    """Measure every contender against one fake Crisp process."""
    with FakeCrispProcess(conversations=20, messages=5, rtm=False) as fake:
        target = Target(fake.url, fake.identifier, fake.key, fake.website_id)
        racing: list[Contender] = [*contenders.in_process(target)]
        offline: list[Contender] = [*contenders.offline(target)]
        beside: list[Contender] = []
        original_batches: dict[str, list[Batch]] = {}
        versions: dict[str, str] = {}
        try:
            batches = _race(racing, config, "cpu")
            offline_batches = _race(offline, config, "no-network")
            if config.original:
                client = original.OriginalClient(original.ensure_venv(), target)
                versions = client.versions
                beside = [contenders.bare_urllib3(target), contenders.crisp(target), client]
                original_batches = _race(beside, config, "original")
        finally:
            for contender in racing + offline + beside:
                contender.close()
    return _summarise(batches, offline_batches, original_batches, config, versions)


def _race(racing: list[Contender], config: Config, label: str) -> dict[str, list[Batch]]:
    """Warm every contender up, then run the rotating rounds."""
    for contender in racing:
        contender.run(config.warmup)
    batches: dict[str, list[Batch]] = {contender.name: [] for contender in racing}
    chunk = max(1, config.batch // CHUNKS)
    for number in range(config.rounds):
        print(f"benchmarks: {label} round {number + 1}/{config.rounds}", file=sys.stderr)
        shift = number % len(racing)
        order = racing[shift:] + racing[:shift]
        turns: dict[str, list[Batch]] = {contender.name: [] for contender in order}
        for _ in range(max(1, config.batch // chunk)):
            for contender in order:
                turns[contender.name].append(contender.run(chunk))
        for name, parts in turns.items():
            batches[name].append(Batch(sum(part.count for part in parts),
                                       sum(part.cpu for part in parts),
                                       sum(part.wall for part in parts)))
    return batches


def _cpu_us(batches: dict[str, list[Batch]]) -> dict[str, list[float]]:
    """Each contender's CPU microseconds per request, round by round."""
    return {name: [b.cpu / b.count * 1e6 for b in runs] for name, runs in batches.items()}


def _rows(batches: dict[str, list[Batch]], cpu: dict[str, list[float]]) -> list[Row]:
    """A row per contender of one race, its ratio to that race's bare urllib3."""
    baseline = cpu[contenders.URLLIB3]
    return [
        Row(
            name=name,
            cpu_us=median(values),
            requests_per_s=median([b.count / b.wall for b in batches[name]]),
            vs_urllib3=median(paired_ratios(values, baseline)),
            cpu_us_rounds=[round(value, 2) for value in values],
        )
        for name, values in cpu.items()
    ]


def _layer_costs(cpu: dict[str, list[float]]) -> dict[str, float]:
    """Each layer's marginal cost: the median of the per-round (default - without it)."""
    default = cpu[contenders.DEFAULT]
    return {
        layer: median(paired_differences(default, cpu[contenders.without(layer)]))
        for layer in contenders.LAYERS
    }


def _summarise(
    batches: dict[str, list[Batch]],
    offline_batches: dict[str, list[Batch]],
    original_batches: dict[str, list[Batch]],
    config: Config,
    versions: dict[str, str],
) -> CpuResult:
    cpu = _cpu_us(batches)
    rows = _rows(batches, cpu)
    offline = _cpu_us(offline_batches)
    ratio = None
    if original_batches:  # its own race: its row, its ratios to that race's baselines
        beside = _cpu_us(original_batches)
        rows += [row for row in _rows(original_batches, beside) if row.name == original.NAME]
        ratio = median(paired_ratios(beside[original.NAME], beside[contenders.DEFAULT]))
    return CpuResult(
        rounds=config.rounds,
        batch=config.batch,
        server=SERVER,
        rows=rows,
        layer_cost_us=_layer_costs(cpu),
        offline_us={name: median(values) for name, values in offline.items()},
        layer_cost_offline_us=_layer_costs(offline),
        original_vs_default=ratio,
        original_versions=versions,
    )
