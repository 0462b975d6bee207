"""`middleware.response_head`: the same messages as ``http.client``, the same errors, and every
connection of the transport reading answers with it, plain or odd, over real sockets."""

from __future__ import annotations

import http.client
import io
import socket
import threading
from collections.abc import Iterator

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware import response_head
from middleware.message import Request
from middleware.response_head import HeadResponse, parse_head
from middleware.transport import Urllib3Transport


def stdlib(block: bytes) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO(block))


def same(block: bytes) -> http.client.HTTPMessage:
    """Parse ``block`` both ways; assert the messages agree; return ours."""
    ours, theirs = parse_head(io.BytesIO(block)), stdlib(block)
    assert type(ours) is type(theirs)
    assert ours.items() == theirs.items()
    assert [type(defect) for defect in ours.defects] == [type(d) for d in theirs.defects]
    assert bool(ours.get_payload()) == bool(theirs.get_payload())
    assert ours.get("content-length") == theirs.get("content-length")
    assert ours.get_all("set-cookie") == theirs.get_all("set-cookie")
    return ours


PLAIN = (
    b"Date: Fri, 04 Dec 2026 03:37:35 GMT\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Content-Length: 152\r\n"
    b"Set-Cookie: a=1\r\n"
    b"set-cookie: b=2\r\n"
    b"X-Empty:\r\n"
    b"X-Spaces: \t  padded value \t \r\n"
    b"X-Colons:a:b: c\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)


@pytest.mark.parametrize(
    "block",
    [
        PLAIN,
        PLAIN.replace(b"\r\n", b"\n"),
        b"\r\n",
        b"A: 1\n\r\n",
        b"A: 1\r\n\tfolded\r\n\r\n",  # obs-fold: the email parser's
        b" A: leading space\r\nB: 2\r\n\r\n",  # a continuation first: a defect
        b"no colon here\r\nB: 2\r\n\r\n",  # the rest is body to the email parser
        b": empty name\r\n\r\n",
        b"A : space before the colon\r\n\r\n",
        b"From nobody\r\nA: 1\r\n\r\n",
        b"A: caf\xe9\r\n\r\n",  # latin-1
        b"A: bare\rreturn\r\n\r\n",
        b"A: vertical\x0btab\r\n\r\n",
        b"A: next line\x85here\r\n\r\n",
        b"A: 1\r\n",  # the stream ends before the empty line
        b"",
    ],
)
def test_the_message_is_the_standard_librarys(block: bytes) -> None:
    same(block)


def test_plain_fields_skip_the_email_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    message = same(PLAIN)
    with monkeypatch.context() as patched:
        patched.setattr(response_head.email.parser, "Parser", None)  # any use would fail
        assert parse_head(io.BytesIO(PLAIN)).items() == message.items()
        with pytest.raises(TypeError):
            parse_head(io.BytesIO(b"A: 1\r\n\tfolded\r\n\r\n"))
    assert message["X-Spaces"] == "padded value \t "  # trailing blanks kept, as compat32 does
    assert message["x-colons"] == "a:b: c"
    assert message.get_all("Set-Cookie") == ["a=1", "b=2"]


_names = st.text(st.sampled_from("AZaz09-_!#~;."), min_size=0, max_size=6)
_values = st.text(st.sampled_from("az :;,\t\x85\xe9\r\x0b\"=/"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_names, st.sampled_from([":", ": ", " : ", "", ":\t"]), _values,
                          st.sampled_from(["\r\n", "\n"])), max_size=6))
def test_any_block_gives_the_standard_librarys_message(
    fields: list[tuple[str, str, str, str]],
) -> None:
    block = "".join(f"{name}{colon}{value}{end}" for name, colon, value, end in fields)
    same(block.encode("latin-1") + b"\r\n")


def test_the_limits_and_errors_are_http_clients() -> None:
    with pytest.raises(http.client.LineTooLong):
        parse_head(io.BytesIO(b"A: " + b"x" * response_head.MAX_LINE + b"\r\n\r\n"))
    many = b"".join(b"A%d: 1\r\n" % n for n in range(response_head.MAX_FIELDS + 1)) + b"\r\n"
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        parse_head(io.BytesIO(many))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        http.client.parse_headers(io.BytesIO(many))


def test_this_python_reads_answers_with_it() -> None:
    assert response_head.FAST  # CPython's begin reads its headers through parse_headers
    assert HeadResponse.begin is not http.client.HTTPResponse.begin


@pytest.fixture
def raw_server() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server answering each request with the next canned answer, then closing."""
    answers: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if answers:
                    conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    host, port = listener.getsockname()
    yield f"http://{host}:{port}", answers
    stop.set()
    listener.close()
    thread.join(5)


def test_the_transport_reads_plain_and_odd_answers_alike(
    raw_server: tuple[str, list[bytes]],
) -> None:
    origin, answers = raw_server
    answers.extend([
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nX-Folded: a\r\n b\r\n"
        b"Content-Length: 3\r\nConnection: close\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
    ])
    transport = Urllib3Transport(timeout=urllib3.Timeout(5.0))
    try:
        first = transport(Request("GET", origin, "/a"))
        assert (first.status, first.body) == (200, b"{}")
        assert first.headers.getlist("X-A") == ["1", "2"]
        second = transport(Request("GET", origin, "/b"))
        assert (second.status, second.body, second.retry_after) == (429, b"abc", 3.0)
        third = transport(Request("GET", origin, "/c"))
        assert (third.status, third.body) == (200, b"ok")
        pool = transport._pools[origin][0]
        assert pool.ConnectionCls is response_head.HeadHTTPConnection
    finally:
        transport.close()
