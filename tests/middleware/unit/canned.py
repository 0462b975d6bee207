"""A terminal handler answering from a script, like httpx's ``MockTransport``, and helpers."""

from __future__ import annotations

from middleware import Request, Response

Answer = Response | Exception


class Canned:
    """Answers each request with the next item of ``script`` (a `Response`, or an exception
    to raise), then with ``default``; records the method of every request it was given."""

    def __init__(self, *script: Answer, default: Answer | None = None) -> None:
        self.script = list(script)
        self.default: Answer = Response(200, {}, b"{}") if default is None else default
        self.methods: list[str] = []

    def __call__(self, request: Request) -> Response:
        self.methods.append(request.method)
        answer = self.script.pop(0) if self.script else self.default
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(status: int, retry_after: str | None = None) -> Response:
    """A canned answer, with a ``Retry-After`` if given."""
    return Response(status, {} if retry_after is None else {"Retry-After": retry_after}, b"{}")


def request(method: str = "GET", *, deadline: float | None = None) -> Request:
    """A request no transport will ever see."""
    return Request(method, "http://unit.invalid", "/v1/thing", route="/thing", deadline=deadline)
