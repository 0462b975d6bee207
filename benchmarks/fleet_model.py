"""A schedule model of the fleet section (section 6): how fast N crisp-sync processes can be,
given the shape of each website's work, and what other ways of sharing it would give.

Measured runs say how fast the fleet is; they cannot say how fast it could be, nor what a
design not built would change. This model answers that from the shape of the work alone,
on the fake the section uses:

* **A website's work** is what crisp-sync asks of it: one listing answer, then its people and
  operators listings and each changed conversation's chain of message pages, handed to the
  process's workers in that order (`crisp_api.sync.engine`). A chain is sequential: a page
  is asked for once the page before it is in. Every answer takes ``latency`` seconds; CPU,
  claims and the wait for a worker are left out (the model is a bound, and the latency-bound
  configuration is where they matter least).
* **The shapes** come from the fake itself: crisp-sync copies it with one worker and no
  latency, so that the fake's request log lists each website's conversations in the order the
  workers get them, with the pages each needs (`shapes_from_log`).
* **A fleet** is ``processes`` processes of ``workers`` workers, each claiming the next free
  website once its own is done, after ``startup`` seconds, and exiting ``tail`` seconds after
  the last website ends (both measured by section 6). The claim order matters (a first copy
  cannot know sizes), so a fleet is modelled over many orders, seeded.

The ways compared (`Way`): whole websites as claimed (what crisp-sync does); the same with
*helpers*, where a process with nothing left to claim takes conversations waiting in another
process's website (sub-website sharing; it cannot take a chain already begun); and *overlap*,
where a process whose website has no work left to hand out claims the next one beside it.

``python -m benchmarks.fleet_model`` prints the figures for section 6's latency-bound
configuration (or the one given).
"""

from __future__ import annotations

import argparse
import heapq
import random
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from benchmarks.config import FULL
from crisp_api.testing import FakeCrispProcess

Shape = list[int]
"""One website's work after its listing: the requests each task makes in series, in the
order crisp-sync hands the tasks to its workers (its people and operators listings first,
one request each, then each conversation's chain of message pages)."""

SIDE_TASKS = 2
"""The people and operators listings, handed out ahead of the conversations."""

_MESSAGES = re.compile(r"/v1/website/([^/]+)/conversation/([^/]+)/messages")
_EPSILON = 1e-9
"""Tasks ending within this of each other free their workers before any is given more."""


class Way(Enum):
    """How a fleet shares the websites."""

    WHOLE = "whole websites"
    HELPERS = "helpers"
    OVERLAP = "overlap"


def shapes_from_log(targets: Iterable[str]) -> list[Shape]:
    """Each website's `Shape`, in the order its first message request appears in ``targets``
    (the request targets of the fake's log, in order): a conversation's chain is its message
    requests, counted, placed where its first one came. The side tasks lead each shape."""
    websites: dict[str, dict[str, int]] = {}
    for target in targets:
        found = _MESSAGES.match(target)
        if found is None:
            continue
        chains = websites.setdefault(found.group(1), {})
        chains[found.group(2)] = chains.get(found.group(2), 0) + 1
    return [[1] * SIDE_TASKS + list(chains.values()) for chains in websites.values()]


@dataclass
class _Website:
    tasks: list[int]
    running: int = 0
    listing: bool = True

    @property
    def handing_out(self) -> bool:
        """Whether it still has work for a worker (its listing, or tasks not begun)."""
        return self.listing or bool(self.tasks)


@dataclass
class _Process:
    idle: int
    sites: dict[int, _Website] = field(default_factory=dict)
    done_at: float = 0.0


@dataclass(order=True)
class _Event:
    at: float
    number: int
    owner: int = field(compare=False)
    """The process holding the website."""
    website: int = field(compare=False)
    worker: int = field(compare=False)
    """The process whose worker did it (another one's when it helped)."""
    listed: bool = field(compare=False, default=False)


def simulate(shapes: Sequence[Shape], order: Iterable[int], *, processes: int, workers: int,
             latency: float, startup: float, tail: float, way: Way = Way.WHOLE) -> float:
    """Seconds from launch to the last exit for ``processes`` processes claiming the websites
    of ``shapes`` in ``order`` (indexes into ``shapes``), shared the ``way`` given."""
    if processes < 1 or workers < 1 or not latency > 0:
        raise ValueError("processes and workers must be at least 1, and latency positive")
    queue = list(order)
    fleet = [_Process(idle=workers) for _ in range(processes)]
    events: list[_Event] = []
    numbers = iter(range(sys.maxsize))

    def begin(at: float, owner: int, website: int, worker: int, requests: int,
              listed: bool = False) -> None:
        fleet[worker].idle -= 1
        heapq.heappush(events, _Event(at + requests * latency, next(numbers), owner, website,
                                      worker, listed))

    def claim(number: int, now: float) -> None:
        process = fleet[number]
        if process.sites and (way is not Way.OVERLAP or not process.idle or any(
                site.handing_out for site in process.sites.values())):
            return
        if not queue:
            return
        website = queue.pop(0)
        process.sites[website] = _Website(list(shapes[website]))
        begin(now, number, website, number, 1, listed=True)

    def give(now: float, worker: int, owner: int) -> None:
        """Hand the tasks waiting in ``owner``'s websites to ``worker``'s idle workers."""
        idle, held = fleet[worker], fleet[owner]
        for website, site in held.sites.items():
            while idle.idle and site.tasks and not site.listing:
                site.running += 1
                begin(now, owner, website, worker, site.tasks.pop(0))

    def hand_out(now: float) -> None:
        for number in range(processes):
            give(now, number, number)
        if way is Way.HELPERS and not queue:  # then processes with nothing left to claim
            for helper in [number for number in range(processes) if not fleet[number].sites]:
                for owner in range(processes):
                    give(now, helper, owner)

    now = startup
    for number in range(processes):
        claim(number, now)
    while events:
        event = heapq.heappop(events)
        now = event.at
        fleet[event.worker].idle += 1
        owner = fleet[event.owner]
        site = owner.sites[event.website]
        if event.listed:
            site.listing = False
        else:
            site.running -= 1
        if not site.handing_out and not site.running:
            del owner.sites[event.website]
            owner.done_at = now
        if events and events[0].at <= now + _EPSILON:
            continue  # what ends at this instant frees its workers first
        hand_out(now)
        for number in range(processes):
            claim(number, now)
        hand_out(now)
    return max(process.done_at for process in fleet) + tail


@dataclass(frozen=True)
class Timing:
    """A fleet to model: its size, and the latency, start-ups and tail it runs with (seconds;
    the start-ups and tail as section 6 measures them)."""

    processes: int
    workers: int
    latency: float
    single_startup: float
    fleet_startup: float
    single_tail: float
    fleet_tail: float

    def run(self, shapes: Sequence[Shape], order: Iterable[int], *, fleet: bool,
            way: Way = Way.WHOLE) -> float:
        """`simulate` one process (``fleet`` False) or the fleet, with these timings."""
        return simulate(shapes, order, processes=self.processes if fleet else 1,
                        workers=self.workers, latency=self.latency,
                        startup=self.fleet_startup if fleet else self.single_startup,
                        tail=self.fleet_tail if fleet else self.single_tail, way=way)


@dataclass(frozen=True)
class Modelled:
    """A way's fleet time over the claim orders drawn, and its speed-up over one process."""

    way: Way
    single_s: float
    fleet_s: list[float]

    @property
    def speedup(self) -> float:
        """One process's time over the fleet's mean time (the mean kept within the times:
        a float sum of equal times may round just outside them)."""
        times = self.fleet_s
        return self.single_s / min(max(statistics.fmean(times), min(times)), max(times))

    @property
    def worst(self) -> float:
        return self.single_s / max(self.fleet_s)

    @property
    def best(self) -> float:
        return self.single_s / min(self.fleet_s)


def model(shapes: Sequence[Shape], timing: Timing, *, orders: int = 200, seed: int = 62,
          ways: Sequence[Way] = tuple(Way)) -> list[Modelled]:
    """Each way's speed-up: one process claiming in listing order, against the fleet over
    ``orders`` claim orders drawn with ``seed`` (the same orders for every way)."""
    draw = random.Random(seed)
    listed = list(range(len(shapes)))
    drawn = [draw.sample(listed, len(listed)) for _ in range(orders)]
    return [Modelled(way, timing.run(shapes, listed, fleet=False, way=way),
                     [timing.run(shapes, order, fleet=True, way=way) for order in drawn])
            for way in ways]


def balanced(shapes: Sequence[Shape], timing: Timing) -> float:
    """The speed-up of a fleet sharing one process's busy time perfectly: its bound."""
    single = timing.run(shapes, range(len(shapes)), fleet=False)
    busy = single - timing.single_startup - timing.single_tail
    return single / (timing.fleet_startup + busy / timing.processes + timing.fleet_tail)


@dataclass(frozen=True)
class Bound:
    """What the model gives one of section 6's configurations, with that run's start-ups and
    tail: perfect balance, whole websites over the claim orders drawn, and helpers."""

    balanced: float
    whole: float
    whole_worst: float
    whole_best: float
    helpers: float
    orders: int


def bound(shapes: Sequence[Shape], timing: Timing, *, orders: int = 200) -> Bound:
    """`balanced`, and the `Way.WHOLE` and `Way.HELPERS` rows of `model`, as one `Bound`."""
    whole, helpers = model(shapes, timing, orders=orders, ways=(Way.WHOLE, Way.HELPERS))
    return Bound(balanced(shapes, timing), whole.speedup, whole.worst, whole.best,
                 helpers.speedup, orders)


def measure_shapes(websites: int, conversations: int, messages: int, seed: int, *,
                   environment: Mapping[str, str]) -> list[Shape]:
    """The shapes of the fake the section uses: crisp-sync copies it with one worker and no
    latency into a throwaway SQLite file, and the fake's request log gives them. The copy
    runs in ``environment`` (section 6's `benchmarks.fleet.cli_environment`), with the fake's
    credentials added."""
    requests = websites * (conversations * (messages + 2) + 8)  # a page per message at most
    with FakeCrispProcess(websites=websites, conversations=conversations, messages=messages,
                          seed=seed, rtm=False, log_size=requests) as fake, \
            tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "crisp_api.sync.cli", "--all-websites", "--workers", "1",
             "--no-progress", "--rate-limit", "100000", "--db", str(Path(folder) / "shape.db"),
             "--rest-host", fake.url],
            env={**environment, "CRISP_IDENTIFIER": fake.identifier, "CRISP_KEY": fake.key},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True, timeout=600)
        stats = fake.stats
        if len(stats.log) < stats.requests:
            raise RuntimeError(f"the fake logged {len(stats.log)} of {stats.requests} requests")
        return shapes_from_log(entry.target for entry in stats.log)


def main(argv: Sequence[str] | None = None) -> int:
    """Print each way's modelled speed-up for one configuration of section 6."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet_model",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    # Section 6's constants; that module imports this one.
    from benchmarks.fleet import CLI_WORKERS, FLEET_SEED, cli_environment  # noqa: PLC0415

    section = FULL  # section 6's latency-bound configuration unless told otherwise
    for flag, default in (("--websites", section.fleet_websites),
                          ("--conversations", section.fleet_slow_conversations),
                          ("--messages", section.fleet_slow_messages),
                          ("--seed", FLEET_SEED), ("--processes", section.fleet_processes),
                          ("--workers", CLI_WORKERS)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--latency-ms", type=float, default=section.fleet_slow_latency_ms)
    parser.add_argument("--single-startup", type=float, default=0.8,
                        help="seconds from launch to one process's first website (measured)")
    parser.add_argument("--fleet-startup", type=float, default=1.1,
                        help="the same for the fleet's processes, started at once")
    parser.add_argument("--tail", type=float, default=0.1)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        shapes = measure_shapes(args.websites, args.conversations, args.messages, args.seed,
                                environment=cli_environment(Path(work)))
    timing = Timing(args.processes, args.workers, args.latency_ms / 1000.0,
                    args.single_startup, args.fleet_startup, args.tail, args.tail)
    print(f"{len(shapes)} websites, {sum(len(s) - SIDE_TASKS for s in shapes)} conversations; "
          f"chains of pages: {_histogram(shapes)}")
    print(f"perfect balance (the bound): {balanced(shapes, timing):.2f}x")
    listed = range(len(shapes))  # crisp-sync claims by website id, the order listed here
    ordered = timing.run(shapes, listed, fleet=False) / timing.run(shapes, listed, fleet=True)
    print(f"whole websites in crisp-sync's claim order: {ordered:.2f}x")
    for found in model(shapes, timing, orders=args.orders, seed=args.seed):
        print(f"{found.way.value}: one process {found.single_s:.1f} s, "
              f"{args.processes} {statistics.fmean(found.fleet_s):.1f} s on average: "
              f"{found.speedup:.2f}x ({found.worst:.2f}x to {found.best:.2f}x over "
              f"{args.orders} claim orders)")
    return 0


def _histogram(shapes: Sequence[Shape]) -> str:
    counts: dict[int, int] = {}
    for shape in shapes:
        for pages in shape[SIDE_TASKS:]:
            counts[pages] = counts.get(pages, 0) + 1
    return ", ".join(f"{count} of {pages}" for pages, count in sorted(counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
