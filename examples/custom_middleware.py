"""A middleware layer of your own: count and time each call, by route template.

Run: ``python examples/custom_middleware.py``. Like every example here, it starts its own
fake Crisp (`crisp_api.testing.FakeCrisp`) on loopback and needs nothing else. Against Crisp
itself, build the client with ``Crisp.from_env()`` and use your own website id.

A layer is any callable ``(request, call_next) -> response`` with a ``name``. Placed after
``logging`` (outside ``retry``) it sees each call once; placed inside ``retry``, each attempt.
"""

import time
from collections import Counter, defaultdict

from crisp_api.testing import FakeCrisp
from middleware import Handler, Request, Response


class Timing:
    """Counts the calls of each route template and adds up the time they took."""

    name = "timing"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def __call__(self, request: Request, call_next: Handler) -> Response:
        started = time.perf_counter()
        try:
            return call_next(request)
        finally:
            self.calls[request.route] += 1
            self.seconds[request.route] += time.perf_counter() - started


with FakeCrisp(conversations=20, messages=3, rtm=False) as fake:  # REST only: needs no extra
    client = fake.client()
    timing = Timing()
    client.use(timing, after="logging")
    print("stack:", " -> ".join(layer.name for layer in client.middleware))

    for conversation in client.website.iter_conversations(fake.website_id, per_page=20):
        client.website.get_conversation(fake.website_id, conversation["session_id"])

    for route, count in timing.calls.most_common():
        print(f"{count:3} x {route}  ({timing.seconds[route] * 1000:.1f} ms in all)")
