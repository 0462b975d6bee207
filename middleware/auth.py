"""HTTP Basic authentication plus fixed headers, added afresh to every attempt."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from middleware.contract import Handler
from middleware.message import Request, Response


class BasicAuth:
    """Adds ``Authorization: Basic`` and a set of fixed headers (tier, user agent...).

    The merged header block is computed once per credential change, not per request. The key
    lives only inside that block; ``repr`` shows neither identifier nor key.
    """

    name = "auth"

    def __init__(
        self,
        identifier: str | None = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._extra: dict[str, str] = dict(headers or {})
        self._credentials: tuple[str, str] | None = None
        self._headers: dict[str, str] = dict(self._extra)
        if identifier is not None or key is not None:
            self.set_credentials(identifier or "", key or "")

    def set_credentials(self, identifier: str, key: str) -> None:
        """Use ``identifier:key`` from now on."""
        if not isinstance(identifier, str) or not isinstance(key, str):
            raise TypeError("identifier and key must be strings")
        if not identifier or not key:
            raise ValueError("identifier and key must not be empty")
        if ":" in identifier:
            raise ValueError("the identifier must not contain ':' (HTTP Basic separator)")
        self._credentials = (identifier, key)
        self._rebuild()

    def set_header(self, name: str, value: str | None) -> None:
        """Set (or with ``None`` remove) a fixed header sent with every request."""
        if value is None:
            self._extra.pop(name, None)
        else:
            self._extra[name] = value
        self._rebuild()

    @property
    def has_credentials(self) -> bool:
        """Whether credentials were given."""
        return self._credentials is not None

    def _rebuild(self) -> None:
        headers = dict(self._extra)
        if self._credentials is not None:
            token = base64.b64encode(":".join(self._credentials).encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self._headers = headers

    def __call__(self, request: Request, call_next: Handler) -> Response:
        request.headers = {**self._headers, **request.headers}
        return call_next(request)

    def __repr__(self) -> str:
        state = "with credentials" if self._credentials else "without credentials"
        return f"<BasicAuth {state}>"
