"""``cpis serve`` and ``cpis worker``: where they listen (refused at once when they
cannot), and stopping in order, during start-up too. Wired by :mod:`cpis.cli`."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket

import structlog

from cpis.app import Start, build, create_app
from cpis.errors import StartupError
from cpis.settings import Settings

log = structlog.get_logger("cpis")


def _listen_error(settings: Settings, exc: OSError) -> StartupError:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    hint = (
        " (another `cpis serve` or `cpis worker`, or another program, has it): set CPIS_PORT"
        if exc.errno == errno.EADDRINUSE
        else ": check CPIS_HOST and CPIS_PORT"
    )
    return StartupError(f"cannot listen on {settings.host}:{settings.port}: {reason}{hint}")


def _bind_any_port(settings: Settings) -> socket.socket:
    """For ``CPIS_PORT=0``: a listening socket on a port the system picks, bound before
    anything starts so the public base URL (and the token audience) can name it."""
    try:
        family = socket.getaddrinfo(
            settings.host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0][0]
    except socket.gaierror:
        raise StartupError(f"cannot listen on {settings.host}: no such host (CPIS_HOST)") from None
    try:
        return socket.create_server((settings.host, 0), family=family, backlog=128)
    except OSError as exc:
        raise _listen_error(settings, exc) from None


def _check_listen(settings: Settings) -> None:
    """Refuse at once an address serve could not listen on (issue 9, item 15)."""
    try:
        infos = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise StartupError(f"cannot listen on {settings.host}: no such host (CPIS_HOST)") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As aiohttp will: SO_REUSEADDR, so only a live listener makes this fail.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _listen_error(settings, exc) from None


def _listener(settings: Settings) -> tuple[Settings, socket.socket | None]:
    """For ``CPIS_PORT=0`` a socket bound on any free port, and the settings naming it;
    otherwise no socket, once the configured address is known to be free."""
    if settings.port == 0:
        sock = _bind_any_port(settings)
        return settings.listening_on(sock.getsockname()[1]), sock
    _check_listen(settings)
    return settings, None


def _stop_on_signals() -> asyncio.Event:
    """An event SIGINT or SIGTERM sets, heard from now on. Installed before anything is
    started, so a stop during start-up (the embedded PostgreSQL starting, migrations)
    is not Python's default death, which left the embedded PostgreSQL running: the
    start-up finishes, then everything is closed in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(settings: Settings, demo: bool) -> int:
    from cpis import demo as demo_data
    from cpis.adapters.tls import server_ssl_context

    # Bad TLS files and a port in use are refused before anything is started.
    ssl_context = server_ssl_context(settings)
    settings, sock = _listener(settings)
    if demo:
        settings = demo_data.demo_settings(settings)
    stop = _stop_on_signals()
    async with build(settings, start=Start.SERVE) as rt:
        app = create_app(rt)
        text = None
        if demo:
            demo_data.serve_demo_issuer(app, settings)
            children = await demo_data.seed(rt)
            await demo_data.seed_person_index(rt)
            text = demo_data.instructions(rt, children)
        if settings.person_index == "local":
            from cpis.adapters.postgres import local_index_size

            if await local_index_size(rt.pool) == 0:
                # Every upload would get CPR01 until an extract is loaded.
                log.warning("person_index_empty", load_with="cpis person-index load FILE")
        from cpis.web.server import start_serving

        if stop.is_set():  # told to stop while starting
            log.info("stopping")
            return 0
        try:
            runner = await start_serving(app, settings, ssl_context=ssl_context, sock=sock)
        except OSError as exc:  # taken since _check_listen looked
            raise _listen_error(settings, exc) from None
        log.info("serving", host=settings.host, port=settings.port, base=settings.public_base_url)
        if text:
            print(text, flush=True)
        await stop.wait()
        log.info("stopping")
        await runner.cleanup()
    return 0


async def worker(settings: Settings) -> int:
    """The background work without the HTTP API: notification delivery, and upload
    files from the MESH inbox when this service has a MESH mailbox; over HTTP (on
    CPIS_HOST and CPIS_PORT, like serve) only the probes and /metrics."""
    from cpis.adapters.tls import server_ssl_context
    from cpis.app import create_worker_app, mesh_inbox_configured
    from cpis.web.server import start_serving

    ssl_context = server_ssl_context(settings)
    settings, sock = _listener(settings)
    stop = _stop_on_signals()
    async with build(settings) as rt:
        if stop.is_set():  # told to stop while starting
            log.info("stopping")
            return 0
        app = create_worker_app(rt)
        try:
            runner = await start_serving(app, settings, ssl_context=ssl_context, sock=sock)
        except OSError as exc:  # taken since _check_listen looked
            raise _listen_error(settings, exc) from None
        log.info(
            "worker_started",
            host=settings.host,
            port=settings.port,
            mesh_uploads=mesh_inbox_configured(settings),
        )
        await stop.wait()
        log.info("stopping")
        await runner.cleanup()
    return 0
