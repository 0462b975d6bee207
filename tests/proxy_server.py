"""A small HTTP proxy for the tests, run as its own process (stdlib only).

It forwards absolute-form requests (``GET http://host:port/path``) and opens ``CONNECT``
tunnels, like a real forward proxy, and appends one JSON line per request it relays to
``--log``: the method, the target, and the ``Proxy-Authorization`` header it received.
Whatever host a request names, it connects to that port on 127.0.0.1: the test servers
answer for made-up names (``crisp.test``) that only the proxy "resolves", so a request
that reaches them proves it came through the proxy, and nothing ever leaves the machine.
``--refuse`` answers every request 403 (a proxy that will not relay).

Run: ``python tests/proxy_server.py --log FILE [--refuse]``; it prints its port, then serves
until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import socketserver
import sys
import threading
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever bytes came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > HEAD_LIMIT:
            raise ConnectionError("no complete request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until ``source`` closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class ProxyHandler(socketserver.BaseRequestHandler):
    """One client connection: one forwarded request, or one tunnel."""

    server: ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            head, rest = _read_head(client)
        except (ConnectionError, OSError):
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.server.record({"method": method, "target": target,
                            "proxy_authorization": headers.get("proxy-authorization")})
        if self.server.refuse:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
            return
        if method == "CONNECT":
            port = int(target.rpartition(":")[2])
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection(("127.0.0.1", parts.port or 80), timeout=10)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            kept = [line for line in header_lines
                    if line.partition(":")[0].strip().lower()
                    not in ("proxy-authorization", "proxy-connection", "connection")]
            upstream.sendall(
                "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"]).encode(
                    "latin-1") + b"\r\n\r\n" + rest
            )
        with upstream:
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(30)


class ProxyServer(socketserver.ThreadingTCPServer):
    """The proxy, with its log and its mode."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, log: str, refuse: bool) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.log = log
        self.refuse = refuse
        self._lock = threading.Lock()

    def record(self, entry: dict[str, str | None]) -> None:
        """Append one relayed request to the log."""
        with self._lock, open(self.log, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


def main() -> None:
    """Serve until killed (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log", required=True)
    parser.add_argument("--refuse", action="store_true")
    arguments = parser.parse_args()
    server = ProxyServer(arguments.log, arguments.refuse)
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever(0.1)


if __name__ == "__main__":
    main()
