"""One fake Crisp, assembled: seeded state, stats, the ``/v1`` API and the admin endpoints.

`Service` is the request handler an `HttpServer` serves, whether in a background thread
(`FakeCrisp`) or as the main program (``python -m crisp_api.testing``).
"""

from __future__ import annotations

from typing import Any

from crisp_api.testing.admin import PREFIX, Admin
from crisp_api.testing.api import Api
from crisp_api.testing.controls import Controls
from crisp_api.testing.faults import Faults
from crisp_api.testing.http11 import Exchange, Request
from crisp_api.testing.stats import Stats
from crisp_api.testing.world import World

DEFAULT_IDENTIFIER = "fake-identifier"
DEFAULT_KEY = "fake-key"


class Service:
    """A fake Crisp's whole server side.

    ``conversations`` is per website and ``messages`` the average per conversation;
    ``people`` defaults to a third of ``conversations``. ``now_ms`` or ``clock_offset_ms`` set
    the server's clock and ``partial_status`` the 206 answers of message pages (see `World`).
    Valid tokens are ``identifier``/``key`` and each website's own token (as listed by the
    plugin connect routes).
    """

    def __init__(self, *, websites: int = 1, conversations: int = 200, messages: int = 30,
                 people: int | None = None, operators: int = 3, seed: int = 1,
                 now_ms: int | None = None, clock_offset_ms: int | None = None,
                 partial_status: bool = True, identifier: str = DEFAULT_IDENTIFIER,
                 key: str = DEFAULT_KEY, faults: Faults | None = None,
                 log_size: int = 1000) -> None:
        self.world = World(websites=websites, conversations=conversations, messages=messages,
                           people=people, operators=operators, seed=seed, now_ms=now_ms,
                           clock_offset_ms=clock_offset_ms, partial_status=partial_status)
        self.stats = Stats(log_size)
        self.identifier = identifier
        self.key = key
        credentials = {website.token["identifier"]: website.token["key"]
                       for website in self.world.websites.values()}
        credentials[identifier] = key
        self.api = Api(self.world, self.stats, credentials, faults or Faults())
        self.controls = Controls(self.world)
        self.admin = Admin(self.api, self.stats, self.controls, self.info)

    def admit(self, request: Request) -> Exchange:
        """Route a request to the admin endpoints or to the API."""
        if request.path.startswith(PREFIX):
            return self.admin.admit(request)
        return self.api.admit(request)

    def now(self) -> int:
        """The fake's clock, in epoch milliseconds (the ``Date`` of every answer)."""
        return self.world.now()

    def info(self) -> dict[str, Any]:
        """What a client needs to talk to this fake (served at ``/_fake/info``)."""
        return {
            "website_id": self.world.website_id,
            "website_ids": list(self.world.websites),
            "identifier": self.identifier,
            "key": self.key,
            "plugin_id": self.world.plugin_id,
            "seed": self.world.seed,
        }
