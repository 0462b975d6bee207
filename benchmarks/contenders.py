"""The contenders of the CPU section: ways of sending ``GET /v1/website/{id}?n=<n>``.

Each one answers with the envelope's ``data``, decoded from JSON, like our client does. The
cache-miss contenders send a new ``n`` with every request, so no layer can answer from memory.
They run in this thread, one at a time, so ``time.thread_time`` measures exactly their own CPU.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import urllib3

from benchmarks.resumed import resumed
from crisp_api import Crisp, defaults
from middleware import Handler, Request, Response

DEFAULT = "crisp-api, default stack (cache miss)"
HIT = "crisp-api, cache hit"
URLLIB3 = "urllib3 (bare PoolManager + json)"
HTTPX = "httpx (Client + json)"
LAYERS = ("logging", "cache", "retry", "rate_limit")
"""The default layers a contender leaves out, one at a time (``auth`` is needed to be answered)."""
HIT_MULTIPLE = 10
"""Cache hits are some thirty times cheaper than a request on the wire, so their contender
sends ten times the batch: a batch of a few milliseconds would mostly measure the CPU caches
that the previous contender left cold, not the steady cost of a hit."""


def without(layer: str) -> str:
    """The name of the contender that runs the default stack less ``layer``."""
    return f"crisp-api, without {layer}"


@dataclass(frozen=True, slots=True)
class Batch:
    """One timed batch: requests sent, CPU seconds of the client thread, wall seconds."""

    count: int
    cpu: float
    wall: float


class Contender(Protocol):
    """Something that sends ``count`` requests when asked and says what they cost."""

    name: str

    def run(self, count: int) -> Batch:
        """Send ``count`` requests; their cost."""
        ...

    def close(self) -> None:
        """Release connections (and processes)."""
        ...


@dataclass(frozen=True)
class Target:
    """Where and as whom the contenders send their requests."""

    url: str
    identifier: str
    key: str
    website_id: str

    @property
    def resource(self) -> str:
        """The full URL of the website, without a query."""
        return f"{self.url}/v1/website/{self.website_id}"

    def headers(self) -> dict[str, str]:
        """The headers our client sends, so the bare libraries send the same bytes."""
        token = base64.b64encode(f"{self.identifier}:{self.key}".encode()).decode("ascii")
        return {
            "User-Agent": defaults.USER_AGENT,
            "Accept": "application/json",
            defaults.TIER_HEADER: "plugin",
            "Authorization": f"Basic {token}",
        }


class Loop:
    """An in-process contender: ``call(n)`` once per request with a fresh ``n`` each time.

    Asked for a batch of ``count``, it sends ``count * multiple`` requests.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[int], Any],
        *,
        close: Callable[[], Any],
        prepare: Callable[[], Any] | None = None,
        multiple: int = 1,
    ) -> None:
        self.name = name
        self._call = call
        self._close = close
        self._prepare = prepare
        self._multiple = multiple
        self._next = 1

    def run(self, count: int) -> Batch:
        if self._prepare is not None:
            self._prepare()
        count *= self._multiple
        numbers = range(self._next, self._next + count)
        self._next += count
        call = self._call
        cpu, wall = time.thread_time(), time.perf_counter()
        for number in numbers:
            call(number)
        return Batch(count, time.thread_time() - cpu, time.perf_counter() - wall)

    def close(self) -> None:
        self._close()


def bare_urllib3(target: Target) -> Loop:
    """urllib3 as most code uses it: one ``PoolManager``, ``request``, ``json.loads``."""
    manager = urllib3.PoolManager()
    resource, headers = target.resource, target.headers()

    def call(number: int) -> Any:
        answer = manager.request("GET", f"{resource}?n={number}", headers=headers)
        return json.loads(answer.data)["data"]

    return Loop(URLLIB3, call, close=manager.clear)


def bare_httpx(target: Target) -> Loop:
    """httpx's synchronous ``Client`` (keep-alive pool), then ``json.loads``."""
    client = httpx.Client(headers=target.headers())
    resource = target.resource

    def call(number: int) -> Any:
        return json.loads(client.get(f"{resource}?n={number}").content)["data"]

    return Loop(HTTPX, call, close=client.close)


def crisp(
    target: Target,
    *,
    leave_out: str | None = None,
    hit: bool = False,
    canned: Response | None = None,
) -> Loop:
    """Our client calling ``website.get_website``: the default stack, less ``leave_out``.

    With ``hit``, every call asks for the same URL, warmed before each batch, so each one is
    answered by the cache (its TTL is longer than any batch); see `HIT_MULTIPLE`. With
    ``canned``, an innermost layer answers every request with it: the client's own CPU,
    without the network (those contenders send `HIT_MULTIPLE` times the batch too).
    """
    client = Crisp()
    client.set_rest_host(target.url)
    client.set_tier("plugin")
    client.authenticate(target.identifier, target.key)
    if leave_out is not None:
        client.remove_middleware(leave_out)
    resumed(client)
    get, website_id = client.website.get_website, target.website_id
    if hit:
        hot = {"n": 0}
        return Loop(
            HIT, lambda _: get(website_id, hot), close=client.close,
            prepare=lambda: get(website_id, hot), multiple=HIT_MULTIPLE,
        )
    name = DEFAULT if leave_out is None else without(leave_out)
    if canned is None:
        return Loop(name, lambda number: get(website_id, {"n": number}), close=client.close)
    client.use(_Canned(canned))
    return Loop(
        name, lambda number: get(website_id, {"n": number}), close=client.close,
        multiple=HIT_MULTIPLE,
    )


class _Canned:
    """Innermost layer: answers every request with one stored answer, sending nothing."""

    name = "canned"

    def __init__(self, answer: Response) -> None:
        self._answer = answer

    def __call__(self, request: Request, call_next: Handler) -> Response:
        return self._answer


def in_process(target: Target) -> list[Loop]:
    """Every in-process contender on the wire, baseline first."""
    return [
        bare_urllib3(target),
        bare_httpx(target),
        crisp(target),
        *(crisp(target, leave_out=layer) for layer in LAYERS),
        crisp(target, hit=True),
    ]


def offline(target: Target) -> list[Loop]:
    """Our default stack and the stacks less one layer, answered without the network by a
    copy of one real answer of the server (status, headers and body)."""
    real = urllib3.request("GET", f"{target.resource}?n=0", headers=target.headers())
    canned = Response(real.status, real.headers, real.data)
    return [
        crisp(target, canned=canned),
        *(crisp(target, leave_out=layer, canned=canned) for layer in LAYERS),
    ]
