"""Where and as whom a client calls, as one frozen value.

`ClientConfig` holds the REST host (origin and path prefix), the base path, the tier and the
credentials. The client's setters build a new one and swap it in with one assignment, so a
request reads one consistent snapshot (never a new host with the old base path) without a
lock on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ClientConfig:
    """A client's target and credentials (see the module docstring)."""

    origin: str
    """``scheme://host[:port]``."""
    prefix: str
    """A path before the base path (a proxy's), usually empty."""
    base_path: str
    """The API's base path, ``/v1``."""
    tier: str
    identifier: str | None = None
    key: str | None = field(default=None, repr=False)

    @cached_property
    def root(self) -> str:
        """What every route's path is appended to (computed once per config: every request
        reads it)."""
        return self.prefix + self.base_path

    @cached_property
    def partition(self) -> tuple[str | None, str]:
        """The credential, as the rate limiter and the cache tell callers apart."""
        return (self.identifier, self.tier)
