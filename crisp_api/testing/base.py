"""What the in-process and the subprocess fakes share: fault changes and a ready client."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from crisp_api.testing.faults import Faults

if TYPE_CHECKING:
    from crisp_api import Crisp


class FakeBase(ABC):
    """A running fake Crisp, reachable at `url` with `identifier`/`key`."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The REST host, e.g. ``http://127.0.0.1:8080`` (the API is under ``/v1``)."""

    @property
    @abstractmethod
    def identifier(self) -> str:
        """The token identifier the fake accepts."""

    @property
    @abstractmethod
    def key(self) -> str:
        """The token key the fake accepts."""

    @property
    @abstractmethod
    def tier(self) -> str:
        """The tier of the fake's tokens: requests and sockets on another are refused."""

    @property
    @abstractmethod
    def rtm_url(self) -> str | None:
        """The RTM (Socket.IO) URL, as ``GET /v1/plugin/connect/endpoints`` answers it; None
        for a fake serving no RTM."""

    @abstractmethod
    def drop_sockets(self) -> int:
        """Cut every RTM socket's connection now, as a network failure would (clients must
        reconnect and authenticate again); how many were cut."""

    @abstractmethod
    def push_event(self, name: str, data: object) -> None:
        """Push a raw RTM event ``name`` with ``data`` (any JSON value, malformed ones
        included, to test how a client takes them) to the sockets listening to it."""

    @property
    @abstractmethod
    def faults(self) -> Faults:
        """The faults in force."""

    @abstractmethod
    def _replace_faults(self, faults: Faults) -> None:
        """Put ``faults`` in force."""

    def set_faults(self, faults: Faults | None = None, /, **changes: Any) -> Faults:
        """Replace the faults while running: ``set_faults(Faults(...))``,
        ``set_faults(error_rate=0.5)`` (every other field at its default) or ``set_faults()``
        to clear them. Restarts the fault generator, budget and token buckets."""
        new = dataclasses.replace(faults or Faults(), **changes)
        self._replace_faults(new)
        return new

    def update_faults(self, **changes: Any) -> Faults:
        """Change only the given fields of the faults in force."""
        new = dataclasses.replace(self.faults, **changes)
        self._replace_faults(new)
        return new

    def client(self, **kwargs: Any) -> Crisp:
        """A `crisp_api.Crisp` client (built with ``kwargs``) pointed at this fake, on the
        fake's tier (plugin by default), authenticated."""
        from crisp_api import Crisp  # noqa: PLC0415 (no import cycle with crisp_api)

        client = Crisp(**kwargs)
        client.set_rest_host(self.url)
        client.set_tier(self.tier)
        client.authenticate(self.identifier, self.key)
        return client
