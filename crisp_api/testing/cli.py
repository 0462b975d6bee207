"""``python -m crisp_api.testing``: serve a fake Crisp until SIGINT or SIGTERM.

The first line of stdout is the URL (flushed as soon as the ports are bound), then
``website_id=...``, ``identifier=...``, ``key=...``, ``tier=...`` and ``rtm_url=...`` lines
(``rtm_url=None`` with ``--no-rtm``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

from crisp_api.testing.api import TIERS
from crisp_api.testing.faults import Faults
from crisp_api.testing.http11 import HttpServer
from crisp_api.testing.service import DEFAULT_IDENTIFIER, DEFAULT_KEY, DEFAULT_TIER, Service


def build_parser() -> argparse.ArgumentParser:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m crisp_api.testing",
        description="Serve a stateful fake Crisp REST API v1 (under /v1) until interrupted. "
                    "Admin endpoints under /_fake/ change faults and read stats.",
    )
    data = parser.add_argument_group("server and data")
    data.add_argument("--host", default="127.0.0.1")
    data.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    data.add_argument("--websites", type=int, default=1)
    data.add_argument("--conversations", type=int, default=200, help="per website")
    data.add_argument("--messages", type=int, default=30, help="average per conversation")
    data.add_argument("--people", type=int, default=None,
                      help="profiles per website (default: a third of --conversations)")
    data.add_argument("--operators", type=int, default=3)
    data.add_argument("--seed", type=int, default=1)
    data.add_argument("--now-ms", type=int, default=None,
                      help="the server's clock at start, in epoch ms (default: the real time)")
    data.add_argument("--clock-offset-ms", type=int, default=None,
                      help="start the server's clock this far from the real time instead "
                           "(negative: behind its clients)")
    data.add_argument("--partial-status", action=argparse.BooleanOptionalAction, default=True,
                      help="answer 206 to a page of messages with older ones left, as Crisp "
                           "does (--no-partial-status: always 200)")
    data.add_argument("--identifier", default=DEFAULT_IDENTIFIER)
    data.add_argument("--key", default=DEFAULT_KEY)
    data.add_argument("--tier", choices=sorted(TIERS), default=DEFAULT_TIER,
                      help="the only tier the tokens are valid on (REST and RTM)")
    data.add_argument("--rtm", action=argparse.BooleanOptionalAction, default=True,
                      help="serve Crisp's RTM API (Socket.IO) too, pushing every change as an "
                           "event (--no-rtm: REST only, without the 'testing' extra)")
    data.add_argument("--rtm-port", type=int, default=0,
                      help="the RTM server's port (default: a free one)")
    data.add_argument("--log-size", type=int, default=1000, help="requests kept in the log")
    faults = parser.add_argument_group("faults (see crisp_api.testing.Faults)")
    faults.add_argument("--latency-ms", type=_latency, default=0.0, help="'50' or '20-80'")
    faults.add_argument("--error-rate", type=float, default=0.0, help="5xx answers")
    faults.add_argument("--html-error-ratio", type=float, default=0.5,
                        help="share of 5xx answers sent as HTML pages")
    faults.add_argument("--throttle-rate", type=float, default=0.0, help="429/420 answers")
    faults.add_argument("--retry-after", type=int, default=1, help="seconds, for 429/420")
    faults.add_argument("--bucket-rate", type=float, default=None,
                        help="token bucket: requests/s per token")
    faults.add_argument("--bucket-burst", type=int, default=10)
    faults.add_argument("--bucket-no-retry-after", action="store_true",
                        help="token bucket refusals carry no Retry-After header")
    faults.add_argument("--drop-before-rate", type=float, default=0.0)
    faults.add_argument("--drop-after-rate", type=float, default=0.0)
    faults.add_argument("--hang-rate", type=float, default=0.0)
    faults.add_argument("--slow-body-rate", type=float, default=0.0)
    faults.add_argument("--slow-chunk-bytes", type=int, default=64)
    faults.add_argument("--slow-chunk-delay-ms", type=float, default=10.0)
    faults.add_argument("--fault-methods", type=_names, default=None,
                        help="comma-separated methods the faults apply to (default: all)")
    faults.add_argument("--fault-routes", type=_names, default=None,
                        help="comma-separated route names or templates (default: all)")
    faults.add_argument("--fault-budget", type=int, default=None,
                        help="stop injecting after this many faults")
    faults.add_argument("--fault-seed", type=int, default=0)
    faults.add_argument("--event-delay-ms", type=float, default=0.0,
                        help="push every RTM event this long after its change")
    return parser


def _latency(text: str) -> float | tuple[float, float]:
    low, dash, high = text.partition("-")
    return (float(low), float(high)) if dash else float(low)


def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def faults_from(args: argparse.Namespace) -> Faults:
    """The `Faults` the options ask for."""
    return Faults(
        latency_ms=args.latency_ms, error_rate=args.error_rate,
        html_error_ratio=args.html_error_ratio, throttle_rate=args.throttle_rate,
        retry_after=args.retry_after, bucket_rate=args.bucket_rate,
        bucket_burst=args.bucket_burst, bucket_retry_after=not args.bucket_no_retry_after,
        drop_before_rate=args.drop_before_rate,
        drop_after_rate=args.drop_after_rate, hang_rate=args.hang_rate,
        slow_body_rate=args.slow_body_rate, slow_chunk_bytes=args.slow_chunk_bytes,
        slow_chunk_delay_ms=args.slow_chunk_delay_ms, methods=args.fault_methods,
        routes=args.fault_routes, budget=args.fault_budget, seed=args.fault_seed,
        event_delay_ms=args.event_delay_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until interrupted; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        service = Service(
            websites=args.websites, conversations=args.conversations, messages=args.messages,
            people=args.people, operators=args.operators, seed=args.seed, now_ms=args.now_ms,
            clock_offset_ms=args.clock_offset_ms, partial_status=args.partial_status,
            identifier=args.identifier, key=args.key, faults=faults_from(args),
            log_size=args.log_size, tier=args.tier, rtm=args.rtm,
        )
    except ValueError as problem:
        parser.error(str(problem))
    asyncio.run(_serve(service, args.host, args.port, args.rtm_port))
    return 0


async def _serve(service: Service, host: str, port: int, rtm_port: int) -> None:
    server = HttpServer(service)
    bound = await server.start(host, port)
    try:
        await service.start_rtm(host, rtm_port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stopping.set)
        shown_host = f"[{host}]" if ":" in host else host
        print(f"http://{shown_host}:{bound}", flush=True)
        print(f"website_id={service.world.website_id}\nidentifier={service.identifier}\n"
              f"key={service.key}\ntier={service.tier}\nrtm_url={service.world.rtm_url}",
              flush=True)
        await stopping.wait()
    finally:
        await service.stop_rtm()
        await server.close()
