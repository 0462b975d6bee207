"""One fake Crisp, assembled: seeded state, stats, the ``/v1`` API, the admin endpoints and
the RTM server.

`Service` is the request handler an `HttpServer` serves, whether in a background thread
(`FakeCrisp`) or as the main program (``python -m crisp_api.testing``); both run its RTM
server (`crisp_api.testing.rtm`) on the same event loop, on a port of its own.
"""

from __future__ import annotations

from typing import Any

from crisp_api.testing.admin import PREFIX, Admin
from crisp_api.testing.api import Api
from crisp_api.testing.controls import Controls
from crisp_api.testing.faults import Faults
from crisp_api.testing.http11 import Exchange, Request
from crisp_api.testing.rtm import RtmServer
from crisp_api.testing.stats import Stats
from crisp_api.testing.world import World

DEFAULT_IDENTIFIER = "fake-identifier"
DEFAULT_KEY = "fake-key"
DEFAULT_TIER = "plugin"


class Service:
    """A fake Crisp's whole server side.

    ``conversations`` is per website and ``messages`` the average per conversation;
    ``people`` defaults to a third of ``conversations``. ``now_ms`` or ``clock_offset_ms`` set
    the server's clock and ``partial_status`` the 206 answers of message pages (see `World`).
    Valid tokens are ``identifier``/``key`` and each website's own token (as listed by the
    plugin connect routes), all of tier ``tier`` only, over REST and RTM alike. ``rtm=False``
    serves no RTM (and needs no ``testing`` extra): the endpoints route then answers ``{}``.
    """

    def __init__(self, *, websites: int = 1, conversations: int = 200, messages: int = 30,
                 people: int | None = None, operators: int = 3, seed: int = 1,
                 now_ms: int | None = None, clock_offset_ms: int | None = None,
                 partial_status: bool = True, identifier: str = DEFAULT_IDENTIFIER,
                 key: str = DEFAULT_KEY, faults: Faults | None = None,
                 log_size: int = 1000, tier: str = DEFAULT_TIER, rtm: bool = True) -> None:
        self.world = World(websites=websites, conversations=conversations, messages=messages,
                           people=people, operators=operators, seed=seed, now_ms=now_ms,
                           clock_offset_ms=clock_offset_ms, partial_status=partial_status)
        self.stats = Stats(log_size)
        self.identifier = identifier
        self.key = key
        credentials = {website.token["identifier"]: website.token["key"]
                       for website in self.world.websites.values()}
        credentials[identifier] = key
        self.api = Api(self.world, self.stats, credentials, faults or Faults(), tier)
        self.tier = tier
        self._credentials = credentials
        self.rtm = (RtmServer(credentials, tier, self._event_delay) if rtm else None)
        self._rtm_address: tuple[str, int] | None = None
        self.controls = Controls(self.world)
        self.admin = Admin(self.api, self.stats, self.controls, self.info,
                           sockets=(self.drop_sockets, self.push_event))

    def _event_delay(self) -> float:
        return self.api.faults.event_delay_ms / 1000.0

    async def start_rtm(self, host: str, port: int) -> None:
        """Serve RTM on ``host:port`` (0: a free port), if this fake has RTM, and announce
        every change to it from now on. Runs on the serving event loop."""
        if self.rtm is None:
            return
        bound = await self.rtm.start(host, port)
        self._rtm_address = (host, bound)
        shown_host = f"[{host}]" if ":" in host else host
        with self.world.lock:
            self.world.rtm_url = f"http://{shown_host}:{bound}/"
            self.world.events = self.rtm
            self.world.rtm_discovery_status = None

    async def take_rtm_down(self, discovery_status: int | None) -> None:
        """An RTM outage: every socket cut, the port closed, the changes meanwhile announced
        to nobody (lost, as Crisp does not replay them). Discovery still names the closed
        port, or answers ``discovery_status`` (e.g. 404) when given. Runs on the serving
        event loop; RuntimeError without RTM."""
        if self.rtm is None or self._rtm_address is None:
            raise RuntimeError("this fake serves no RTM")
        with self.world.lock:
            self.world.events = None
            self.world.rtm_discovery_status = discovery_status
        await self.rtm.close()

    async def bring_rtm_back(self) -> None:
        """End an outage (`take_rtm_down`): serve RTM again on the same port."""
        if self.rtm is None or self._rtm_address is None:
            raise RuntimeError("this fake serves no RTM")
        self.rtm = RtmServer(self._credentials, self.tier, self._event_delay)
        await self.start_rtm(*self._rtm_address)

    async def stop_rtm(self) -> None:
        """Stop announcing changes, cut every socket and stop serving RTM."""
        if self.rtm is None:
            return
        with self.world.lock:
            self.world.events = None
            self.world.rtm_url = None
        await self.rtm.close()

    def push_event(self, name: str, data: object) -> None:
        """Push a raw RTM event, any JSON value as its payload, to the sockets listening to
        ``name``, in order with the changes' events (RuntimeError without RTM)."""
        with self.world.lock:
            sink = self.world.events
            if sink is None:
                raise RuntimeError("this fake serves no RTM")
            sink.publish(name, data)

    def drop_sockets(self) -> int:
        """Cut every RTM socket's connection now (see `RtmServer.drop`); how many. Runs on
        the serving event loop."""
        return 0 if self.rtm is None else self.rtm.drop()

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
            "tier": self.tier,
            "rtm_url": self.world.rtm_url,
            "plugin_id": self.world.plugin_id,
            "seed": self.world.seed,
        }
