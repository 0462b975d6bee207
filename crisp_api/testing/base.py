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
        plugin tier, authenticated."""
        from crisp_api import Crisp  # noqa: PLC0415 (no import cycle with crisp_api)

        client = Crisp(**kwargs)
        client.set_rest_host(self.url)
        client.set_tier("plugin")
        client.authenticate(self.identifier, self.key)
        return client
