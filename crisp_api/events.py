"""Crisp's real-time events (the RTM API) as a stream: `EventStream`, or `Crisp.events`.

Crisp pushes every change (a message sent, edited or removed, a conversation's state or
segments, a people profile...) over Socket.IO, as the official clients receive it:

1. the RTM URL is asked of the REST API (``GET /v1/plugin/connect/endpoints``, plugin tier:
   ``socket.app``), unless given;
2. a Socket.IO client (Engine.IO protocol 4, WebSocket transport only) connects to the URL's
   origin, with the URL's path as the Socket.IO path (``/`` for Crisp's own URLs);
3. on every connection, the first and each reconnection, it sends ``authentication`` with the
   token (``username``/``password``), the ``tier`` and the ``events`` it wants; Crisp answers
   ``authenticated``, or ``unauthorized`` (bad credentials, wrong tier), which is final.

A dropped connection is opened again after a backoff with jitter, authenticated again, and
the RTM URL is asked for again when reconnecting keeps failing (Crisp moves clients between
RTM servers). Events sent while the socket was down are lost: Crisp does not replay them, so
a consumer that must not miss anything reconciles through the REST API after a reconnection
(`EventStream.reconnects` and ``on_state`` tell when).

Payloads are JSON objects carrying ``website_id`` and, for session and message events,
``session_id`` (field names as in Crisp's own Go client, ``crisp/events.go``):

- ``message:send`` (from the visitor), ``message:received`` (from an operator): the whole
  message, as the REST messages routes serve it;
- ``message:updated``: ``fingerprint``, ``content``; ``message:removed``: ``fingerprint``;
- ``session:set_state``: ``state``; ``session:set_segments``: ``segments``;
  ``session:removed``;
- ``people:profile:created``, ``people:profile:removed``: ``people_id``, ``email``;
  ``people:profile:updated``: the same plus ``update``, the profile's new card.

This module needs the ``events`` extra (``pip install 'crisp-api-next[events]'``): python-socketio's
client and websocket-client, imported when a stream is built. `crisp_api.testing.FakeCrisp`
serves the RTM API too, for tests.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self
from urllib.parse import urlsplit

from crisp_api import defaults
from crisp_api.errors import ForbiddenError, RouteError, UnauthorizedError
from crisp_api.extras import install_hint
from crisp_api.redaction import redact_url
from middleware.structured_log import structured

if TYPE_CHECKING:
    from crisp_api.config import ClientConfig
    from crisp_api.resources.plugin import PluginResource

EVENTS = frozenset({
    "message:send",
    "message:received",
    "message:updated",
    "message:removed",
    "session:set_state",
    "session:set_segments",
    "session:removed",
    "people:profile:created",
    "people:profile:updated",
    "people:profile:removed",
})
"""The event names a stream may subscribe to."""

INSTALL_HINT = f"Crisp's RTM events need the 'events' extra: {install_hint('events')}"


class EventsError(Exception):
    """The event stream failed. Its own base rather than `crisp_api.RouteError`: the socket
    is no REST call, and has no HTTP status, method nor route to report. No message ever
    holds a credential."""


class EventsUnauthorizedError(EventsError):
    """Crisp refused the token, for good: the socket's authentication answered
    ``unauthorized`` (bad credentials, or a token of another tier), or the REST API answered
    401/403 while the RTM endpoint was being discovered (that `RouteError` is the
    ``__cause__``). The stream stops; retrying with the same token cannot succeed."""


class EventsTimeoutError(EventsError, TimeoutError):
    """`EventStream.start` saw no authenticated connection in time; the message says what
    the last attempt met."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event as received. ``website_id``/``session_id`` are the payload's, when it has
    them as strings; ``received_at`` is `time.monotonic` at reception."""

    name: str
    data: Mapping[str, Any]
    website_id: str | None
    session_id: str | None
    received_at: float


Callback = Callable[[Event], None]

Discover = Callable[..., Any]
"""Asks the REST API for the RTM endpoints (``GET /plugin/connect/endpoints``): called with
``use_cache=False`` and a ``deadline`` in seconds, it returns the answer's data."""


class EventsClient(Protocol):
    """What a stream is opened from (`crisp_api.Crisp` is one): the token, in the client's
    frozen configuration, and the plugin routes that discover the RTM URL."""

    @property
    def config(self) -> ClientConfig:
        """Where and as whom the client calls, as one frozen value."""
        ...

    @property
    def plugin(self) -> PluginResource:
        """The plugin routes (``get_connect_endpoints`` discovers the RTM URL)."""
        ...


class _Endpoint(NamedTuple):
    """An RTM URL split as Socket.IO needs it: the origin to connect to and the Socket.IO
    path (the URL's path, ``/`` when it has none, as Crisp's Node client does)."""

    url: str
    origin: str
    path: str


class _AttemptFailedError(Exception):
    """One connection attempt failed in a way the next attempt may not (network, no answer,
    a REST error other than 401/403)."""


class _Session:
    """What one connection's handlers report to the thread that opened it. Each flag is set
    before ``signal``, so a waiter that wakes sees it."""

    def __init__(self) -> None:
        self.signal = threading.Event()
        self.authenticated = False
        self.refused = False
        self.lost = False

    def mark(self, flag: str) -> None:
        setattr(self, flag, True)
        self.signal.set()


class EventStream:
    """Crisp's real-time events ``events`` (names from `EVENTS`) for the token of ``client``
    (a `crisp_api.Crisp` already authenticated; on the plugin tier unless ``endpoint``, the
    RTM URL, is given, which skips discovery). The stream keeps two things of the client: its
    frozen `ClientConfig` as it is now (the token it authenticates with, on every connection)
    and its discovery route; it never reaches into the client otherwise.

    `start` connects in the background and returns once Crisp accepted the token. Events are
    then read by iterating (blocking; the iteration ends once the stream is closed and its
    queue drained) or with `get`; `on` hands an event name's events to callbacks instead.
    `close` (or leaving a ``with`` block) disconnects for good.

    The queue holds ``queue_size`` events. When it is full, the socket's reader waits up to
    ``overflow_wait`` seconds for the consumer to make room (slowing down reading, so the
    socket's own buffers absorb a burst), then drops the event: counted in `dropped` and
    logged (once per overflow), as the reader must keep answering the server's pings. A
    consumer that cannot lose events reconciles through the REST API when `dropped` grows,
    as after a reconnection.

    Reconnection: ``reconnect_delay`` seconds after a failure or a drop, twice as long after
    each further failure up to ``reconnect_delay_max``, each wait spread by ``jitter`` (a
    fraction of itself, either way); after ``rediscover_after`` failures in a row the RTM URL
    is discovered again (unless it was given). ``connect_timeout`` bounds opening the socket
    and, again, Crisp's answer to the authentication. ``on_state(True/False)`` is called on
    each authenticated connection and each loss of it (from the stream's thread; keep it
    short). Refused credentials end the stream: `start`, `get` and the iteration raise
    `EventsUnauthorizedError`.

    A payload that is not a JSON object is dropped with a warning: input from outside never
    stops the stream. Logs go to ``logger`` (any structlog logger; by default the stdlib
    logger ``crisp_api``, as the client's) and never hold the key.
    """

    def __init__(
        self,
        client: EventsClient,
        events: Sequence[str],
        *,
        endpoint: str | None = None,
        queue_size: int = defaults.RTM_QUEUE_SIZE,
        overflow_wait: float = defaults.RTM_OVERFLOW_WAIT,
        connect_timeout: float = defaults.RTM_CONNECT_TIMEOUT,
        reconnect_delay: float = defaults.RTM_RECONNECT_DELAY,
        reconnect_delay_max: float = defaults.RTM_RECONNECT_DELAY_MAX,
        jitter: float = defaults.RTM_JITTER,
        rediscover_after: int = defaults.RTM_REDISCOVER_AFTER,
        on_state: Callable[[bool], None] | None = None,
        logger: Any = None,
    ) -> None:
        self._names = _event_names(events)
        _check_positive("connect_timeout", connect_timeout)
        _check_positive("reconnect_delay", reconnect_delay)
        _check_positive("reconnect_delay_max", reconnect_delay_max)
        if isinstance(overflow_wait, bool) or not 0 <= overflow_wait < math.inf:
            raise ValueError(f"overflow_wait must be a number of seconds >= 0, got "
                             f"{overflow_wait!r}")
        if isinstance(jitter, bool) or not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a fraction within 0..1, got {jitter!r}")
        for name, value in (("queue_size", queue_size), ("rediscover_after", rediscover_after)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        config = client.config  # the token the stream authenticates with, on every connection
        if config.identifier is None or config.key is None:
            raise ValueError("call authenticate(identifier, key) first")
        if endpoint is None and config.tier != "plugin":
            raise ValueError(
                f"discovering the RTM endpoint needs the plugin tier (the client is on "
                f"{config.tier!r}); give endpoint= for another tier")
        self._given = None if endpoint is None else _endpoint(endpoint)
        self._socket_class, self._connection_errors = _socketio()
        self._config = config
        self._discover_endpoints: Discover = client.plugin.get_connect_endpoints
        self._queue_size = queue_size
        self._overflow_wait = overflow_wait
        self._connect_timeout = connect_timeout
        self._reconnect_delay = reconnect_delay
        self._reconnect_delay_max = reconnect_delay_max
        self._jitter = jitter
        self._rediscover_after = rediscover_after
        self._on_state = on_state
        self._log = structured(logger, defaults.LOGGER_NAME)

        self._cond = threading.Condition()
        self._buffer: deque[Event] = deque()
        self._callbacks: dict[str, tuple[Callback, ...]] = {}
        self._closed = False
        self._error: EventsError | None = None
        self._connected = False
        self._ever_connected = False
        self._reconnects = 0
        self._dropped = 0
        self._overflowing = False
        self._last_change = time.monotonic()
        self._last_failure: str | None = None
        self._current: _Endpoint | None = self._given
        self._closing = threading.Event()
        self._session: _Session | None = None
        self._thread: threading.Thread | None = None
        self._dispatching = threading.local()

    # Public state -----------------------------------------------------------------------

    @property
    def events(self) -> tuple[str, ...]:
        """The event names subscribed to."""
        return self._names

    @property
    def endpoint(self) -> str | None:
        """The RTM URL in use (None before discovery)."""
        current = self._current
        return None if current is None else current.url

    @property
    def connected(self) -> bool:
        """Whether the socket is up and Crisp accepted the token."""
        return self._connected

    @property
    def reconnects(self) -> int:
        """Authenticated connections after the first: each follows a loss, during which
        events were missed."""
        return self._reconnects

    @property
    def last_change(self) -> float:
        """`time.monotonic` of the last connection or disconnection (the stream's creation
        before the first)."""
        return self._last_change

    @property
    def dropped(self) -> int:
        """Events dropped because the queue stayed full (see the class)."""
        return self._dropped

    # Lifetime ---------------------------------------------------------------------------

    @property
    def last_failure(self) -> str | None:
        """What the last failed connection attempt met, or the lost connection (None before
        any failure)."""
        return self._last_failure

    def begin(self) -> Self:
        """Connect in the background and return at once: a service that can work without
        live events starts it so, and watches `connected` and `last_failure`. The stream
        keeps retrying (see the class) until closed; refused credentials end it, and `get`
        raises `EventsUnauthorizedError` then."""
        with self._cond:
            if self._thread is not None or self._closed:
                raise RuntimeError("an EventStream starts once")
            self._thread = threading.Thread(target=self._run, name="crisp-events",
                                            daemon=True)
        self._thread.start()
        return self

    def start(self, timeout: float = defaults.RTM_START_TIMEOUT) -> Self:
        """Connect in the background (`begin`); return once Crisp accepted the token. Raises
        `EventsUnauthorizedError` if it refused it, `EventsTimeoutError` if no connection was
        authenticated within ``timeout`` seconds (retries included); either closes the
        stream."""
        _check_positive("timeout", timeout)
        self.begin()
        with self._cond:
            up = self._cond.wait_for(
                lambda: self._connected or self._error is not None or self._closed, timeout)
            error = self._error
        if error is not None or not up:
            self.close()
            raise error or EventsTimeoutError(
                f"no authenticated RTM connection within {timeout:g} s (last attempt: "
                f"{self._last_failure or 'none failed yet'})")
        return self

    def close(self) -> None:
        """Disconnect for good and wake every reader (idempotent). Events already queued can
        still be read."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._closing.set()
        session = self._session
        if session is not None:
            session.signal.set()
        thread = self._thread
        # A callback or the on_state hook may close the stream from the socket's or the
        # stream's own thread, which the disconnection waits for: no join there.
        if (thread is not None and thread is not threading.current_thread()
                and not getattr(self._dispatching, "active", False)):
            thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Reading ----------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds (None: as long as it takes);
        None if none came in time, or the stream is closed and drained. Raises
        `EventsUnauthorizedError` once the queued events are read, if Crisp refused the
        token; RuntimeError before `start`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._thread is None and not self._closed:
                raise RuntimeError("start() the stream before reading it")
            while True:
                if self._buffer:
                    event = self._buffer.popleft()
                    self._cond.notify_all()
                    return event
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def __iter__(self) -> Iterator[Event]:
        """Every event as it comes (blocking), until the stream is closed and drained."""
        while (event := self.get()) is not None:
            yield event

    def on(self, name: str, callback: Callback) -> None:
        """Hand the events named ``name`` (one the stream subscribed to) to ``callback``
        instead of the queue, so a stream used only through callbacks never fills it.

        Callbacks run on the socket's reading thread, in the order events arrive: keep them
        short (a slow one delays every later event). An exception in one is logged and the
        stream goes on.
        """
        if name not in self._names:
            raise ValueError(f"{name!r} is not an event of this stream: {list(self._names)}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._cond:
            self._callbacks[name] = (*self._callbacks.get(name, ()), callback)

    # The connection thread --------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._closing.is_set():
            try:
                endpoint = self._current
                if endpoint is None or (self._given is None and failures
                                        and failures % self._rediscover_after == 0):
                    endpoint = self._current = self._discover()
                session, socket = self._open(endpoint)
            except EventsUnauthorizedError as exc:
                self._fail(exc)
                return
            except _AttemptFailedError as exc:
                failures += 1
                self._last_failure = str(exc)
                self._log.warning("events.connect_failed", error=str(exc), failures=failures)
                self._pause(failures)
                continue
            failures = 0
            self._set_state(True)
            while not (session.lost or session.refused or self._closing.is_set()):
                session.signal.wait()
                session.signal.clear()
            socket.disconnect()
            if not self._closing.is_set():
                self._last_failure = "the connection was lost"
            self._set_state(False)
            if session.refused:
                self._fail(EventsUnauthorizedError("Crisp refused the token on reconnection"))
                return
            self._pause(1)

    def _pause(self, attempt: int) -> None:
        """Wait before attempt ``attempt`` + 1: exponential backoff with jitter."""
        delay = min(self._reconnect_delay_max, self._reconnect_delay * 2 ** (attempt - 1))
        self._closing.wait(delay * (1 + self._jitter * (2 * random.random() - 1)))  # noqa: S311

    def _discover(self) -> _Endpoint:
        """The RTM URL, from the REST API."""
        try:
            data = self._discover_endpoints(use_cache=False, deadline=self._connect_timeout)
        except (UnauthorizedError, ForbiddenError) as exc:
            raise EventsUnauthorizedError(
                f"the REST API refused the token while discovering the RTM endpoint "
                f"({exc.status} {exc.reason})") from exc
        except RouteError as exc:
            raise _AttemptFailedError(f"RTM endpoint discovery failed: {exc}") from exc
        socket = data.get("socket") if isinstance(data, dict) else None
        url = socket.get("app") if isinstance(socket, dict) else None
        if not isinstance(url, str):
            raise _AttemptFailedError("RTM endpoint discovery answered no socket.app URL")
        try:
            return _endpoint(url)
        except ValueError as exc:
            raise _AttemptFailedError(str(exc)) from None

    def _open(self, endpoint: _Endpoint) -> tuple[_Session, Any]:
        """A connected socket whose authentication Crisp accepted."""
        session = _Session()
        socket = self._socket_class(reconnection=False, logger=False, engineio_logger=False,
                                    handle_sigint=False, request_timeout=self._connect_timeout)
        socket.on("authenticated", lambda *_: session.mark("authenticated"))
        socket.on("unauthorized", lambda *_: session.mark("refused"))
        socket.on("disconnect", lambda *_: session.mark("lost"))
        for name in self._names:
            socket.on(name, self._receiver(name))
        self._session = session
        if self._closing.is_set():
            raise _AttemptFailedError("closed")
        config = self._config
        identifier, key, tier = config.identifier, config.key, config.tier
        try:
            socket.connect(endpoint.origin, transports=["websocket"],
                           socketio_path=endpoint.path, wait_timeout=self._connect_timeout)
            socket.emit("authentication", {"username": identifier, "password": key,
                                           "tier": tier, "events": list(self._names)})
        except self._connection_errors as exc:
            socket.disconnect()
            raise _AttemptFailedError(f"cannot connect to {endpoint.url}: "
                                      f"{type(exc).__name__} {exc}") from None
        deadline = time.monotonic() + self._connect_timeout
        while not (session.authenticated or session.refused or session.lost
                   or self._closing.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            session.signal.wait(remaining)
            session.signal.clear()
        if session.authenticated:
            return session, socket
        socket.disconnect()
        if session.refused:
            raise EventsUnauthorizedError(
                f"Crisp's RTM API refused the token on tier {tier!r} (unauthorized)")
        raise _AttemptFailedError("the connection closed before authentication"
                                  if session.lost or self._closing.is_set()
                                  else "no answer to the authentication")

    def _set_state(self, up: bool) -> None:
        with self._cond:
            if self._connected == up:
                return
            if up:
                self._reconnects += self._ever_connected
                self._ever_connected = True
            self._connected = up
            self._last_change = time.monotonic()
            self._cond.notify_all()
        if up:
            self._log.info("events.connected", endpoint=self.endpoint,
                           reconnects=self._reconnects)
        elif self._closing.is_set():
            self._log.info("events.closed", endpoint=self.endpoint)
        else:
            self._log.warning("events.disconnected", endpoint=self.endpoint)
        hook = self._on_state
        if hook is not None:
            try:
                hook(up)
            except Exception as exc:  # a broken hook must not stop the stream
                self._log.warning("events.on_state_failed", error=type(exc).__name__)

    def _fail(self, error: EventsError) -> None:
        self._log.error("events.unauthorized", error=str(error))
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # The socket's reading thread --------------------------------------------------------

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(data: Any = None, *_: Any) -> None:
            self._receive(name, data)

        return receive

    def _receive(self, name: str, data: Any) -> None:
        if not isinstance(data, dict):
            self._log.warning("events.payload_dropped", event_name=name,
                              payload_type=type(data).__name__)
            return
        event = Event(name, data, _text(data.get("website_id")), _text(data.get("session_id")),
                      time.monotonic())
        callbacks = self._callbacks.get(name)
        if callbacks is None:
            self._enqueue(event)
            return
        self._dispatching.active = True
        try:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception as exc:  # one broken callback must not stop the stream
                    self._log.warning("events.callback_failed", event_name=name,
                                      error=type(exc).__name__)
        finally:
            self._dispatching.active = False

    def _enqueue(self, event: Event) -> None:
        deadline = time.monotonic() + self._overflow_wait
        with self._cond:
            while len(self._buffer) >= self._queue_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._dropped += 1
                    first = not self._overflowing
                    self._overflowing = True
                    break
                self._cond.wait(remaining)
            else:
                if not self._closed:
                    self._buffer.append(event)
                    self._overflowing = False
                    self._cond.notify_all()
                return
        if first:
            self._log.warning("events.queue_full", event_name=event.name,
                              queue_size=self._queue_size, dropped=self._dropped)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _event_names(events: Sequence[str]) -> tuple[str, ...]:
    """The distinct names of ``events``, in order; ValueError for unknown ones."""
    if isinstance(events, str) or not isinstance(events, Sequence):
        raise ValueError("events must be a sequence of event names, such as "
                         "['message:send', 'message:received']")
    names = tuple(dict.fromkeys(events))
    if not names:
        raise ValueError("give at least one event name")
    unknown = [name for name in names if name not in EVENTS]
    if unknown:
        raise ValueError(f"unknown event names {unknown}; known: {sorted(EVENTS)}")
    return names


def _shown(url: object) -> str:
    """An endpoint for a message: credentials in it masked (`redact_url`)."""
    return repr(redact_url(url)) if isinstance(url, str) else type(url).__name__


def _endpoint(url: str) -> _Endpoint:
    """An RTM URL (``http(s)://`` or ``ws(s)://``) split into origin and Socket.IO path."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except (AttributeError, ValueError):
        raise ValueError(f"the RTM endpoint is not a URL: {_shown(url)}") from None
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ValueError(
            f"the RTM endpoint must be an http(s) or ws(s) URL, got {_shown(url)}"
        )
    if parts.username or parts.password:
        raise ValueError("the RTM endpoint must not carry credentials")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return _Endpoint(url, origin, parts.path or "/")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@cache
def _socketio() -> tuple[type[Any], tuple[type[Exception], ...]]:
    """The Socket.IO client class (imported on first use), and what its connecting and
    emitting raise when the connection fails (python-socketio's errors; ValueError for a
    client not in a state to connect)."""
    try:
        import engineio  # noqa: PLC0415 (the optional 'events' extra)
        import socketio  # noqa: PLC0415
        import websocket  # noqa: F401, PLC0415 (else engineio silently cannot connect)
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    class OrderedEngineIO(engineio.Client):  # type: ignore[misc]  # untyped base
        """python-engineio's client, with two fixes Crisp needs.

        It hands each message to a new thread, so two events close together may reach us
        out of order (an edit before its message): here messages are handled on the reading
        thread, in order (which also makes a slow consumer slow the reading down, rather than
        pile up threads). A server's disconnection, handled there too, then must not wait for
        the reading thread to end, being that thread. And for the root path that Crisp's RTM
        URLs have, it asks for ``//?EIO=4...``, where Crisp's clients ask for ``/?EIO=4...``.
        """

        def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
            if event == "message":
                kwargs["run_async"] = False
            return super()._trigger_event(event, *args, **kwargs)

        def disconnect(self, abort: bool = False, **options: Any) -> None:
            reading = self.read_loop_task is threading.current_thread()
            super().disconnect(abort=abort or reading, **options)

        def _get_engineio_url(self, url: str, engineio_path: str, transport: str) -> str:
            built: str = super()._get_engineio_url(url, engineio_path, transport)
            return built if engineio_path.strip("/") else built.replace("//?", "/?", 1)

    class OrderedClient(socketio.Client):  # type: ignore[misc]  # untyped base
        """python-socketio's client over `OrderedEngineIO`."""

        def _engineio_client_class(self) -> type[Any]:
            return OrderedEngineIO

    errors: tuple[type[Exception], ...] = (socketio.exceptions.SocketIOError, ValueError)
    return OrderedClient, errors
