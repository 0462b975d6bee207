"""``python -m benchmarks.ports``: how the metrics port holds under slow, idle and many clients.

A child process serves ``/metrics`` and ``/healthz`` (`crisp_api.sync.monitoring.serve`); this
process plays the clients and reads the child's thread count from ``/proc``. Three loads:

- 120 slowloris clients, each sending its request head one byte a second;
- 500 idle connections that never send anything;
- 300 concurrent clients making 10 ``GET /metrics`` each, one connection per request.

It prints the peak thread counts, the failed requests, the p50 and p99 latencies, and whether
the child wrote a traceback on stderr. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

SLOW_CLIENTS = 120
IDLE_CLIENTS = 500
CONCURRENT = 300
REQUESTS_EACH = 10


def _serve() -> None:
    """The child: serve metrics on a free port, print it, wait for stdin to close."""
    from crisp_api import Crisp  # noqa: PLC0415 - the child only
    from crisp_api.sync.health import Health  # noqa: PLC0415
    from crisp_api.sync.monitoring import Metrics, serve  # noqa: PLC0415

    health = Health()
    client = Crisp()
    server = serve("127.0.0.1", 0, health=health, threshold=60.0,
                   metrics=Metrics(client, health, 60.0))
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no thread count")


def _peak(pid: int, seconds: float) -> int:
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, _threads(pid))
        time.sleep(0.1)
    return peak


def _slowloris(port: int, pid: int) -> str:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 30 + b"\r\n\r\n"
    stop = threading.Event()
    cut: list[float] = []

    def client() -> None:
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                for byte in head:
                    if stop.is_set():
                        return
                    sock.sendall(bytes([byte]))
                    time.sleep(1.0)
        except OSError:
            cut.append(time.monotonic() - started)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(SLOW_CLIENTS)]
    for worker in workers:
        worker.start()
    peak = _peak(pid, 20.0)
    stop.set()
    for worker in workers:
        worker.join(5)
    median = sorted(cut)[len(cut) // 2] if cut else float("nan")
    return (f"slowloris x{SLOW_CLIENTS}: peak {peak} threads; "
            f"{len(cut)} cut within 20 s (median after {median:.1f} s)")


def _idle(port: int, pid: int) -> str:
    sockets = []
    refused = 0
    for _ in range(IDLE_CLIENTS):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            refused += 1
    peak = _peak(pid, 3.0)
    answered = 0
    for sock in sockets:
        sock.settimeout(0.0)
        with contextlib.suppress(OSError):
            answered += bool(sock.recv(100))
        sock.close()
    return (f"idle x{IDLE_CLIENTS}: peak {peak} threads; {refused} refused at connect, "
            f"{answered} answered (503) within 3 s")


def _get(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def _concurrent(port: int, pid: int) -> str:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    go = threading.Event()

    def client() -> None:
        go.wait()
        for _ in range(REQUESTS_EACH):
            started = time.monotonic()
            try:
                outcome = str(_get(port))
            except (OSError, ValueError, IndexError) as exc:
                outcome = type(exc).__name__
            with lock:
                latencies.append(time.monotonic() - started)
                statuses[outcome] = statuses.get(outcome, 0) + 1

    workers = [threading.Thread(target=client, daemon=True) for _ in range(CONCURRENT)]
    for worker in workers:
        worker.start()
    sampler = _Sampler(lambda: _threads(pid))
    go.set()
    for worker in workers:
        worker.join()
    sampler.stop()
    latencies.sort()
    failed = sum(count for outcome, count in statuses.items() if outcome not in ("200", "503"))
    return (f"concurrent {CONCURRENT} x {REQUESTS_EACH}: {statuses}; failed {failed}; "
            f"p50 {latencies[len(latencies) // 2]:.3f} s, "
            f"p99 {latencies[int(len(latencies) * 0.99)]:.3f} s; peak {sampler.peak} threads")


class _Sampler:
    def __init__(self, read: Callable[[], int]) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._read = read
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.1):
            self.peak = max(self.peak, self._read())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def main() -> None:
    """Run each load against a fresh child and print one line per load."""
    for load in (_slowloris, _idle, _concurrent):
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.ports", "--serve"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=os.environ)
        assert child.stdout is not None
        assert child.stdin is not None
        port = int(child.stdout.readline())
        start = _threads(child.pid)
        line = load(port, child.pid)
        child.stdin.close()
        child.wait(60)
        assert child.stderr is not None
        err = child.stderr.read()
        print(f"{line}; {start} threads at start; tracebacks on stderr: "
              f"{err.count('Traceback')}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        main()
