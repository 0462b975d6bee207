"""``timeout=`` as one number or a ``(connect, read)`` pair, each wait checked on loopback
sockets: a listener whose accept queue is full (a connect that never completes) and one that
accepts and never answers (a read that never ends)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from crisp_api import Crisp, NetworkError, RequestTimeoutError


@pytest.fixture
def unanswered() -> Iterator[str]:
    """A server URL that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def unconnectable() -> Iterator[str]:
    """A server URL whose accept queue is full: a new connection's handshake never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def _client(url: str, timeout: float | tuple[float, float]) -> Crisp:
    return Crisp(identifier="id", key="key", rest_host=url, timeout=timeout, max_retries=0,
                 cache_ttl=0)


def test_the_connect_timeout_bounds_the_connect_only(unconnectable: str) -> None:
    client = _client(unconnectable, (0.3, 30))
    started = time.monotonic()
    with pytest.raises(NetworkError) as failed:
        client.website.get_website("w")
    assert time.monotonic() - started < 10
    assert "ConnectTimeout" in str(failed.value)
    assert not isinstance(failed.value, RequestTimeoutError)


def test_the_read_timeout_bounds_the_wait_for_the_answer_only(unanswered: str) -> None:
    client = _client(unanswered, (30, 0.3))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError) as failed:
        client.website.get_website("w")
    assert time.monotonic() - started < 10
    assert "ReadTimeout" in str(failed.value)


def test_one_number_is_both_waits_and_a_pair_is_kept_as_given(unanswered: str) -> None:
    client = _client(unanswered, 0.3)
    with pytest.raises(RequestTimeoutError):
        client.website.get_website("w")
    assert client.get_timeout() == 0.3
    client.set_timeout((2, 5))
    assert client.get_timeout() == (2, 5)


@pytest.mark.parametrize(("timeout", "kind", "words"), [
    ((1, 2, 3), ValueError, "(connect, read) pair of seconds, got a tuple of 3"),
    ((0, 2), ValueError, "timeout[0] (connect) must be a number of seconds > 0"),
    ((1, "2"), TypeError, "timeout[1] (read) must be a number of seconds"),
    ([1, 2], TypeError, "or a (connect, read) tuple of seconds, got [1, 2] (list)"),
    (float("inf"), ValueError, "timeout must be a number of seconds > 0"),
])
def test_a_bad_timeout_is_refused_naming_the_option(
    timeout: object, kind: type[Exception], words: str
) -> None:
    with pytest.raises(kind) as refused:
        Crisp(timeout=timeout)  # type: ignore[arg-type]
    assert words in str(refused.value)
    with pytest.raises(kind):
        Crisp().set_timeout(timeout)  # type: ignore[arg-type]
