"""The middleware contract: a callable that turns a request into a response via the next handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from middleware.message import Request, Response

Handler = Callable[[Request], Response]
"""Anything that answers a request: the transport, or a middleware bound to what follows it."""


@runtime_checkable
class Middleware(Protocol):
    """One layer of the pipeline.

    It may call ``call_next`` zero times (cache hit, fail fast), once, or several times (retry).
    ``call_next`` is passed by position (any parameter name will do). ``name`` identifies the
    layer, unique within a stack, so users can insert their own before or after it.
    """

    name: str

    def __call__(self, request: Request, call_next: Handler) -> Response:
        """Handle ``request``, delegating to ``call_next`` for the rest of the pipeline."""
        ...
