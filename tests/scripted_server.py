"""A loopback HTTP/1.1 server that answers from a script, for testing the generic pipeline.

The middleware package knows nothing about Crisp, so its tests need a server whose every
answer a test can dictate: "503, then 200", "429 with Retry-After", "drop the connection",
"never answer". Crisp-shaped behaviour is tested against `crisp_api.testing.FakeCrisp`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """Answer with this status, body and headers (JSON envelope by default)."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    close: bool = False
    """Close the connection after the answer (with a short Content-Length: a truncated body)."""


@dataclass
class Drop:
    """Read the request, then close the connection without answering."""


@dataclass
class Hang:
    """Read the request and answer nothing for ``seconds``, then close."""

    seconds: float = 5.0


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: tuple[str, int]
    at: float


Action = Reply | Drop | Hang


class ScriptedServer:
    """Answers queued actions in order, then ``default``; records every request in ``seen``."""

    def __init__(self) -> None:
        self.script: deque[Action] = deque()
        self.default: Action = Reply()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (TimeoutError, ConnectionError):
                    self.close_connection = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._lock:
                    owner.seen.append(
                        Seen(
                            self.command,
                            self.path,
                            dict(self.headers.items()),
                            body,
                            self.client_address,
                            time.monotonic(),
                        )
                    )
                    action = owner.script.popleft() if owner.script else owner.default
                if isinstance(action, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(action, Hang):
                    owner._stopping.wait(action.seconds)
                    self.close_connection = True
                    return
                payload = action.body
                if payload is None:
                    payload = json.dumps(
                        {
                            "error": action.status >= 400,
                            "reason": "scripted",
                            "data": {"path": self.path},
                        }
                    ).encode()
                head = [f"HTTP/1.1 {action.status} Scripted"]
                headers = {"Content-Type": action.content_type, **action.headers}
                headers.setdefault("Content-Length", str(len(payload)))
                head += [f"{k}: {v}" for k, v in headers.items()]
                raw = ("\r\n".join(head) + "\r\n\r\n").encode()
                self.wfile.write(raw + (b"" if self.command == "HEAD" else payload))
                if action.close:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        """The server's origin, e.g. ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def push(self, *actions: Action) -> None:
        """Queue answers for the next requests."""
        with self._lock:
            self.script.extend(actions)

    def count(self, method: str | None = None) -> int:
        """How many requests (of ``method``) arrived."""
        with self._lock:
            return sum(1 for s in self.seen if method is None or s.method == method)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
