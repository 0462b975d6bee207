"""Composing middlewares into one handler, once, when the stack is built or changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from middleware.contract import Handler, Middleware
from middleware.message import Request, Response


def compose(middlewares: Sequence[Middleware], transport: Handler) -> Handler:
    """Bind ``middlewares`` (outermost first) around ``transport`` into a single callable.

    Each layer is bound to its successor once, so a request pays one extra call per layer and
    no list walking. The successor is passed by position: a layer may name its parameters as
    it likes.
    """
    handler = transport
    for middleware in reversed(middlewares):
        handler = _bound(middleware, handler)
    return handler


def _bound(middleware: Middleware, successor: Handler) -> Handler:
    def handle(request: Request) -> Response:
        return middleware(request, successor)

    return handle


class Pipeline:
    """An ordered middleware stack in front of a transport.

    The stack is an immutable tuple; every change builds a new tuple and a new composed handler
    and swaps both in with single assignments, so threads already inside the old pipeline finish
    undisturbed.
    """

    def __init__(self, middlewares: Iterable[Middleware], transport: Handler) -> None:
        self._transport = transport
        self._stack: tuple[Middleware, ...] = ()
        self._handler: Handler = transport
        self.replace(middlewares)

    @property
    def stack(self) -> tuple[Middleware, ...]:
        """The active middlewares, outermost first."""
        return self._stack

    def __call__(self, request: Request) -> Response:
        return self._handler(request)

    def replace(self, middlewares: Iterable[Middleware]) -> None:
        """Use ``middlewares`` (outermost first) as the whole stack."""
        stack = tuple(middlewares)
        names: set[str] = set()
        for middleware in stack:
            if not callable(middleware) or not isinstance(getattr(middleware, "name", None), str):
                raise TypeError(
                    f"{middleware!r} is not a middleware: it needs a str `name` and "
                    "`__call__(request, call_next)`"
                )
            if middleware.name in names:
                raise ValueError(
                    f"two middlewares are named {middleware.name!r}: names must be unique, "
                    "since use(before=...) and remove_middleware() find layers by name"
                )
            names.add(middleware.name)
        self._handler = compose(stack, self._transport)
        self._stack = stack

    def insert(
        self, middleware: Middleware, *, before: str | None = None, after: str | None = None
    ) -> None:
        """Add ``middleware`` just before or just after the layer named ``before``/``after``.

        With neither, it goes innermost (closest to the transport). Naming a layer that is not
        in the stack is a ``ValueError``.
        """
        if before is not None and after is not None:
            raise ValueError("give either before= or after=, not both")
        stack = list(self._stack)
        anchor = before if before is not None else after
        if anchor is None:
            stack.append(middleware)
        else:
            index = self.index(anchor)
            stack.insert(index if before is not None else index + 1, middleware)
        self.replace(stack)

    def remove(self, name: str) -> Middleware:
        """Take the layer called ``name`` out of the stack and return it."""
        stack = list(self._stack)
        removed = stack.pop(self.index(name))
        self.replace(stack)
        return removed

    def index(self, name: str) -> int:
        """Position of the layer called ``name``, outermost first."""
        for position, middleware in enumerate(self._stack):
            if middleware.name == name:
                return position
        names = ", ".join(m.name for m in self._stack) or "none"
        raise ValueError(f"no middleware named {name!r} in the stack (have: {names})")
