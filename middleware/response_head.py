"""Reading an answer's header fields without the email package, for the transport's connections.

``http.client`` parses every answer's header block with the email package's feed parser, a
general MIME parser: for an answer of four header fields that is some 19 µs of CPU, more than
the whole client adds to a request (the rest of the middleware stack, the method, the URL and
the JSON decoding), and a twentieth of a loopback request's CPU. Every request pays it.

`parse_head` gives the very same `http.client.HTTPMessage` for a block of plain fields (a
name of visible ASCII, a colon, a value of visible ASCII, spaces and tabs, each line ended by
CRLF or LF, then the empty line): each field is set raw, as the feed parser's ``compat32``
policy stores it (the name as sent, the value without the spaces and tabs before it, the ones
after it kept). Any other block (a folded line, a line without a colon, a control character or
a byte above 127 anywhere, an end of stream before the empty line) goes to the email package
as before, so what it makes of odd input (its defects, which urllib3 reports) stays its own.
The lines are read with ``http.client``'s limits, and break them with its errors.

`HeadResponse` is ``http.client``'s own response whose ``begin`` (the status line, the
framing: chunked, the length, whether the connection closes) is the standard library's very
code, with `parse_head` in place of ``http.client.parse_headers``: nothing of the standard
library is changed for anyone else. Were a Python to read its headers otherwise, the stock
``begin`` stays (`FAST`: False) and nothing else changes. The transport's pools make their
connections with `HeadHTTPConnection` and `HeadHTTPSConnection`, urllib3's own with this
response class.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types
from collections.abc import Callable
from typing import Any, BinaryIO

from urllib3.connection import HTTPConnection, HTTPSConnection

MAX_LINE = 65536
"""The longest header line read, as ``http.client`` allows (its ``_MAXLINE``)."""
MAX_FIELDS = 100
"""The most header lines read, as ``http.client`` allows (its ``_MAXHEADERS``)."""

_PLAIN = re.compile(rb"(?:[!-9;-~]+:[\t -~]*\r?\n)*\r?\n")
"""A block of plain fields ending with the empty line (see the module docstring)."""


def parse_head(
    fp: BinaryIO, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
) -> http.client.HTTPMessage:
    """Read header lines from ``fp`` up to the empty line; the message ``http.client``'s
    ``parse_headers`` makes of them (same arguments, same result, same errors)."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_FIELDS:
            raise http.client.HTTPException(f"got more than {MAX_FIELDS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    block = b"".join(lines)
    if _PLAIN.fullmatch(block) is None:
        parser = email.parser.Parser(_class=_class)
        message: http.client.HTTPMessage = parser.parsestr(block.decode("iso-8859-1"))
        return message
    message = _class()
    for line in lines[:-1]:
        name, _, value = line.partition(b":")
        message.set_raw(name.decode("ascii"), value.lstrip(b" \t").rstrip(b"\r\n").decode("ascii"))
    return message


def _begin_reading_with(parse: Callable[..., http.client.HTTPMessage]) -> Any:
    """``http.client.HTTPResponse.begin`` calling ``parse`` for its header block; None if
    that method does not read its headers through the module's ``parse_headers``."""
    stock = http.client.HTTPResponse.begin
    code = getattr(stock, "__code__", None)
    if code is None or "parse_headers" not in code.co_names or stock.__closure__:
        return None
    namespace = dict(vars(http.client))
    namespace["parse_headers"] = parse
    return types.FunctionType(code, namespace, stock.__name__, stock.__defaults__)


_BEGIN = _begin_reading_with(parse_head)
FAST = _BEGIN is not None
"""Whether answers are read with `parse_head` on this Python (see the module docstring)."""


class HeadResponse(http.client.HTTPResponse):
    """``http.client``'s response, its header block read by `parse_head`."""

    if _BEGIN is not None:
        begin = _BEGIN


class HeadHTTPConnection(HTTPConnection):
    """urllib3's connection, its answers read by `HeadResponse`."""

    response_class = HeadResponse


class HeadHTTPSConnection(HTTPSConnection):
    """urllib3's TLS connection, its answers read by `HeadResponse`."""

    response_class = HeadResponse
