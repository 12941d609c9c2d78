"""Serving the application over HTTP, with the bounds aiohttp's server leaves to us.

A slow or malicious client must cost bounded time and memory, and nothing it
sends may be answered with anything but an OperationOutcome (SPEC §4, §6).
aiohttp's :class:`~aiohttp.web.RequestHandler` (one per connection) is kept
and told three more things:

- **Header deadline.** A request's header must be complete within
  ``CPIS_HEADER_TIMEOUT_SECONDS`` of its first byte (of the connection opening,
  for the first request); otherwise the connection is closed. aiohttp's only
  timer is the keep-alive one, which also runs while a header is half sent, and
  which is deliberately long (3630 s since aiohttp 3.11, to outlast a reverse
  proxy's idle connections and so avoid racing it: aio-libs/aiohttp#9285); the
  ``slow_request_timeout`` it once had (aio-libs/aiohttp#1198) is gone. So the two are split as Go's
  ``ReadHeaderTimeout`` and ``IdleTimeout`` split them: an idle keep-alive
  connection is left to aiohttp's timer, a request being sent is not.
- **Body deadline.** A request's body must be complete within
  ``CPIS_BODY_TIMEOUT_SECONDS`` of its header. Otherwise the route reading it
  gets :class:`~cpis.errors.RequestTimeout` (408), nothing more is read, and the
  connection is closed once that answer is sent. Without it a body that stops
  halfway holds its route until the client goes away.
- **Requests the parser refuses** (a header line over 8190 bytes, a control
  character, a malformed request line or chunk) never reach the application or
  its middleware: aiohttp answers them itself, in ``RequestHandler.handle_error``,
  as ``text/plain`` quoting the offending bytes, which may be personal data.
  There is no hook for it (aio-libs/aiohttp#3287, open; #9882), so that method is
  overridden: an OperationOutcome naming only the kind of fault. aiohttp's C
  parser reports a fault inside a chunked body the same way, as a new request,
  and leaves the route reading that body waiting: the fault is handed to the
  body, so the route answers 400 at once.

This depends on ``RequestHandler`` internals (``_request_count``, ``_messages``,
``handle_error``), which aiohttp exports but does not document;
``tests/e2e/test_slow_clients.py`` and ``tests/e2e/test_unparseable_requests.py``
drive each path over bare sockets, so a change in them fails there.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from aiohttp import http_exceptions, web
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader

from cpis.errors import CpisError, InvalidRequest, RequestTimeout
from cpis.settings import Settings
from cpis.web.middleware import error_response

log = structlog.get_logger("cpis.web")

_FAULTS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "the request line or a header is too long"),
    (http_exceptions.InvalidHeader, "a header is not valid"),
    (http_exceptions.BadHttpMethod, "the request method is not valid"),
    (http_exceptions.BadStatusLine, "the request line is not valid"),
    (http_exceptions.TransferEncodingError, "the request body's chunked encoding is not valid"),
    (http_exceptions.ContentLengthError, "the request's Content-Length is not valid"),
)


def _fault(exc: BaseException | None) -> str:
    """What was wrong, by kind only: the parser's own message quotes the bytes."""
    for kind, text in _FAULTS:
        if isinstance(exc, kind):
            return text
    return "the request is not valid HTTP/1.1"


class _Connection(web.RequestHandler):
    """One client connection: aiohttp's handler, with deadlines and FHIR error answers."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        header_timeout: float,
        body_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._event_loop = loop
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # The body of the last request parsed, while it may still be arriving.
        self._body: StreamReader | None = None

    # --- deadlines ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        between_requests = self._body is None or self._body.is_eof()
        if data and self._header_timer is None and between_requests:
            self._start_header_clock()  # the first byte of the next request
        parsed = self._request_count
        super().data_received(data)
        if self._request_count == parsed:
            return
        # The parser has produced a request, or refused one: the header is in.
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        message, payload = self._messages[-1]
        if isinstance(message, RawRequestMessage):
            self._watch_body(payload)
            return
        body, self._body = self._body, None
        if body is not None and not body.is_eof():
            # A fault inside the body being read: aiohttp's C parser queues it as a
            # new request and drops the body, whose reader would wait forever.
            body.set_exception(web.RequestPayloadError(_fault(getattr(message, "exc", None))))
            # Marked complete too, so that nothing lingers over it after the answer.
            body.feed_eof()

    def _start_header_clock(self) -> None:
        self._header_timer = self._event_loop.call_later(
            self._header_timeout, self._header_too_slow
        )

    def _header_too_slow(self) -> None:
        self._header_timer = None
        log.info("request_header_timeout", seconds=self._header_timeout)
        self.force_close()

    def _watch_body(self, body: StreamReader) -> None:
        self._body = body
        if body.is_eof():
            return
        timer = self._event_loop.call_later(self._body_timeout, self._body_too_slow, body)
        self._body_timer = timer
        body.on_eof(timer.cancel)

    def _body_too_slow(self, body: StreamReader) -> None:
        if body.is_eof():
            return
        log.info("request_body_timeout", seconds=self._body_timeout)
        body.set_exception(
            RequestTimeout(f"the request body did not arrive within {self._body_timeout:g} seconds")
        )
        body.feed_eof()
        # Read nothing more from this client (the parser would feed a finished body);
        # the connection closes once the route's answer is sent.
        self.close()

    # --- errors aiohttp answers itself ------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp does: too late for another answer
            raise ConnectionError("a response was already started")
        trace_id = str(uuid.uuid4())
        err: CpisError
        if status >= 500:
            log.error("unhandled_error", trace_id=trace_id, status=status, exc_info=exc)
            err = CpisError("the request could not be completed")
        else:
            fault = _fault(exc)
            log.info("unreadable_request", trace_id=trace_id, status=400, fault=fault)
            err = InvalidRequest(fault, status=400)
        response = error_response(err)
        response.headers["TraceID"] = trace_id
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's own "Unhandled exception" lines, e.g. a body that failed (as above)
        # while unread data was being drained after the answer: the answer was sent.
        exc = kw.get("exc_info")
        if isinstance(exc, CpisError | web.RequestPayloadError):
            log.info("connection_dropped", error=type(exc).__name__)
        else:
            log.error("http_server_error", exc_info=exc)


class _Server(web.Server):
    """aiohttp's protocol factory, making :class:`_Connection` instead of its own."""

    def __init__(self, base: web.Server, **connection: Any) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
        )
        self._connection = connection
        self._event_loop = asyncio.get_running_loop()

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._event_loop, **self._connection)


class _AppRunner(web.AppRunner):
    def __init__(self, app: web.Application, **connection: Any) -> None:
        super().__init__(app, handle_signals=False)
        self._connection = connection

    async def _make_server(self) -> web.Server:
        return _Server(await super()._make_server(), **self._connection)


async def start_serving(
    app: web.Application,
    settings: Settings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """``app`` served on ``settings.host``/``settings.port``, or on ``sock`` (already
    bound, as for ``CPIS_PORT=0``); stop with ``runner.cleanup()``."""
    runner = _AppRunner(
        app,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        # No aiohttp access log: its request line carries the query string, and with
        # it the NHS number searched for; the middleware writes one line per request.
        access_log=None,
    )
    await runner.setup()
    try:
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock, ssl_context=ssl_context)
        else:
            site = web.TCPSite(
                runner, settings.host, settings.port, reuse_address=True, ssl_context=ssl_context
            )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


@asynccontextmanager
async def serving(
    app: web.Application,
    settings: Settings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[web.AppRunner]:
    """:func:`start_serving` for the length of a block."""
    runner = await start_serving(app, settings, ssl_context=ssl_context, sock=sock)
    try:
        yield runner
    finally:
        await runner.cleanup()
