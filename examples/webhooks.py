"""Web hooks: verify Crisp's signature on each hook your server receives.

Run: ``python examples/webhooks.py``. This one needs no Crisp, real or fake: it starts a small
receiver (the standard library's ``http.server``) on loopback and plays Crisp's part itself,
signing hooks with `crisp_api.webhooks.sign` as Crisp does with your plugin's secret.

The receiver hands the raw body, exactly as received, to `crisp_api.webhooks.parse`, which
verifies the signature and the timestamp, checks the body, and (given one `ReplayGuard` for
the server's life) refuses a hook it already accepted. ``crisp-sync --follow --hooks-port``
serves the same checks in front of its mirror.
"""

import http.client
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crisp_api import webhooks

# The plugin's signing secret: from the environment (crisp-sync reads the same variable),
# never from the code. Without it, this example makes one up.
SECRET = os.environ.get("CRISP_HOOKS_SECRET") or secrets.token_hex(16)
guard = webhooks.ReplayGuard()


class HookReceiver(BaseHTTPRequestHandler):
    """Answers 200 to a verified hook, 400/401/409 to one that must not be trusted."""

    def do_POST(self) -> None:  # the name http.server calls
        raw_body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            event, data = webhooks.parse(SECRET, raw_body, dict(self.headers.items()),
                                         replays=guard)
        except webhooks.MalformedWebhookError:
            self.send_response(400)
        except webhooks.ReplayedWebhookError:
            self.send_response(409)
        except webhooks.WebhookError:
            self.send_response(401)
        else:
            print(f"  accepted {event} for {data['session_id']}: {data['content']!r}")
            self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the example prints what matters itself."""


def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    """POST a hook to the receiver; its HTTP status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/", body, headers)
        return connection.getresponse().status
    finally:
        connection.close()


server = ThreadingHTTPServer(("127.0.0.1", 0), HookReceiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
try:
    body = json.dumps({
        "website_id": "website-1", "event": "message:send",
        "data": {"session_id": "session_1", "type": "text", "content": "Hello!"},
    }).encode()
    timestamp = str(int(time.time() * 1000))  # epoch milliseconds, as Crisp sends it
    signed = {webhooks.SIGNATURE_HEADER: webhooks.sign(SECRET, body, timestamp),
              webhooks.TIMESTAMP_HEADER: timestamp, "Content-Type": "application/json"}

    print("signed hook:", post(port, body, signed))
    print("same hook again (a replay):", post(port, body, signed))
    print("body changed on the way:", post(port, body.replace(b"Hello", b"Hijacked"), signed))
    print("unsigned:", post(port, body, {"Content-Type": "application/json"}))
finally:
    server.shutdown()
    server.server_close()
