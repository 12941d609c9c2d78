"""The one place adapters are built and wired: :func:`build` and :func:`create_app`.

``build(settings, **overrides)`` starts (or attaches to) the database,
migrates it, loads the keys and builds every adapter the service has into one
:class:`Runtime`; ``create_app``, the dispatcher and the MESH upload poller
are wired on top of a runtime and construct nothing of their own. The CLI,
the demo and the tests all go through ``build``; a test passes a fake of a
port (a clock it moves, a rest-hook sender that may reach loopback, dispatch
timings) as an override named after the runtime's field.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Counter

from cpis.adapters.audit_log import ANCHOR_FILE
from cpis.adapters.channels import Channels
from cpis.adapters.cis2 import Cis2Issuers
from cpis.adapters.clock import SystemClock
from cpis.adapters.crypto import FieldVault
from cpis.adapters.data_dir import database_name, key_source, require_service_data
from cpis.adapters.embedded import EmbeddedPostgres
from cpis.adapters.keys import KeyMaterial, load_keys
from cpis.adapters.mesh import MeshClient
from cpis.adapters.oidc_login import OidcSignIn
from cpis.adapters.person_index import open_person_index
from cpis.adapters.postgres import (
    PgAuditLog,
    PgDatabase,
    PgIndexCheckStore,
    PgMeshSenders,
    PgOutboxStore,
    PgPollLock,
    PgRetention,
    PgSubscriptionStore,
    PgWebSessions,
    Pool,
    agree_on_keys,
    keys_recorded,
    migrate,
    open_pool,
    record_person_index,
    recorded_person_index,
)
from cpis.adapters.render import Renderer
from cpis.adapters.tokens import JwtTokenAuthority
from cpis.adapters.webhook import WebhookSender
from cpis.errors import MissingKeys, StartupError
from cpis.ports.clock import Clock
from cpis.ports.person_index import PersonIndex
from cpis.services.web_sign_in import SessionLimits, SignInServices
from cpis.settings import Settings
from cpis.web import fhir, la, notifications, oauth, openapi, ops, pages, subscriptions, uploads
from cpis.web.auth import (
    ORGANISATIONS,
    RATE_LIMITER,
    SOURCE_LIMITER,
    OrganisationCache,
    RateLimiter,
    SourceLimiter,
)
from cpis.web.metrics import Metrics
from cpis.web.middleware import REFUSALS, request_middleware
from cpis.web.notifications import INBOX
from cpis.web.refusals import RefusedRequests
from cpis.web.state import NOTIFICATIONS_QUEUED, SERVICES, Services, Signal
from cpis.workers.audit_chain import run_audit_chainer
from cpis.workers.dispatcher import Dispatcher, DispatchSettings
from cpis.workers.index_check import run_index_check
from cpis.workers.mesh_uploads import MeshUploads, MeshUploadSettings
from cpis.workers.retention import run_retention

log = structlog.get_logger("cpis")


@dataclass(frozen=True, slots=True)
class Runtime:
    """Every adapter of one process, built once by :func:`build`."""

    settings: Settings
    pool: Pool
    db: PgDatabase
    keys: KeyMaterial
    vault: FieldVault
    tokens: JwtTokenAuthority
    clock: Clock
    # None: CPIS_PERSON_INDEX=none, NHS numbers are checked by their check digit only
    person_index: PersonIndex | None
    outbox: PgOutboxStore  # the notification outbox and its deliveries; the LA inbox
    subscriptions: PgSubscriptionStore
    retention: PgRetention
    index_check: PgIndexCheckStore
    audit: PgAuditLog  # seals and verifies the audit log with the audit keys
    mesh_senders: PgMeshSenders
    # One MESH upload poll at a time across replicas; None without a mailbox, or with a
    # pool of one (the lock holds a connection while applying needs another, so it would
    # wait for itself; without it two replicas may both answer a file, and the sequence
    # rule still applies it once).
    poll_lock: PgPollLock | None
    webhook: WebhookSender
    # The service's own MESH mailbox (CPIS_MESH_*): notifications out, upload files in.
    mesh: MeshClient | None
    dispatch: DispatchSettings
    # People signed in to the web pages, and their organisations' OpenID providers.
    web_sessions: PgWebSessions
    identity_providers: OidcSignIn
    web_session_limits: SessionLimits


# The settings, pool and keys are what the adapters are built from, and the vault is the
# keys': none of them can be swapped for a fake without the rest disagreeing.
_OVERRIDABLE = frozenset(f.name for f in dataclasses.fields(Runtime)) - {
    "settings",
    "pool",
    "keys",
    "vault",
}


class Start(enum.Enum):
    """What a command may do when it finds no service where it looks (issue 9, item 12)."""

    SERVE = "serve"  # may set up a data directory and keys; records the person index
    SETUP = "setup"  # `cpis migrate`: may set up a data directory and keys
    ADMIN = "admin"  # every other command: uses the service's data, or refuses

    @property
    def may_set_up(self) -> bool:
        return self is not Start.ADMIN


async def database_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The configured PostgreSQL, or an embedded one started in the data directory."""
    if settings.database_url is not None:
        return settings.database_url.reveal(), None
    embedded = await asyncio.to_thread(EmbeddedPostgres, settings.data_dir)
    log.info("embedded_postgres_started", data_dir=str(settings.data_dir))
    return embedded.dsn, embedded


async def _agreed_person_index(settings: Settings, pool: Pool, start: Start) -> Settings:
    """``settings`` with the person index every way in must use (issue 9, item 13): serve
    records its own; any other command follows serve's, or refuses if told of another."""
    mine = settings.person_index
    if start is Start.SERVE:
        before = await record_person_index(pool, mine)
        if before is not None:
            log.warning("person_index_changed", before=before, now=mine)
        return settings
    recorded = await recorded_person_index(pool)
    if recorded is None or recorded == mine:
        return settings
    if settings.person_index_set:
        raise StartupError(
            f"`cpis serve` checks uploads against the {recorded} person index but"
            f" CPIS_PERSON_INDEX={mine} here, so a file would get another answer this way"
            f" than over HTTP or MESH: unset CPIS_PERSON_INDEX, or set it to {recorded}"
        )
    if recorded == "pds" and settings.pds_url is None:
        raise StartupError(
            "`cpis serve` checks uploads against PDS: set CPIS_PDS_URL (and CPIS_PDS_TOKEN)"
            " here as it has them"
        )
    return dataclasses.replace(settings, person_index=recorded)


def _mesh_client(settings: Settings) -> MeshClient | None:
    if not (settings.mesh_url and settings.mesh_mailbox):
        return None
    return MeshClient(
        base_url=settings.mesh_url,
        mailbox_id=settings.mesh_mailbox,
        password=settings.mesh_password.reveal() if settings.mesh_password else "",
        shared_key=settings.mesh_shared_key.reveal() if settings.mesh_shared_key else "",
        ca_file=settings.mesh_ca_file,
    )


@asynccontextmanager
async def build(
    settings: Settings,
    *,
    start: Start = Start.ADMIN,
    apply_migrations: bool = True,
    **overrides: Any,
) -> AsyncIterator[Runtime]:
    """Attach to (``start`` permitting: set up) the service's database and keys, and build
    every adapter; all closed again when the block ends.

    ``overrides`` replace the adapter of the same :class:`Runtime` field (``clock``,
    ``webhook``, ``mesh``, ``person_index``, ``dispatch``, a store…), and the adapters
    built after it use the replacement. Whatever stops a start is a
    :class:`~cpis.errors.StartupError` with one line for the operator.
    """
    unknown = set(overrides) - _OVERRIDABLE
    if unknown:
        raise TypeError(f"build() cannot override {', '.join(sorted(unknown))}")
    if not start.may_set_up:
        require_service_data(settings)  # before anything is started or written
    dsn, embedded = await database_url(settings)
    try:
        pool = await open_pool(
            dsn,
            name=database_name(settings),
            min_size=settings.db_pool_min,
            max_size=max(settings.db_pool_min, settings.db_pool_max),
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        try:
            if apply_migrations:
                applied = await migrate(pool)
                if applied:
                    log.info("migrations_applied", versions=applied)
            # New keys only for a new database: one whose keys are recorded but missing
            # here must not get keys that cannot open what it holds.
            fresh = start.may_set_up and not await keys_recorded(pool)
            try:
                keys = load_keys(settings, log=log, create=fresh)
            except MissingKeys as exc:
                raise StartupError(
                    f"{exc}, and {database_name(settings)} was set up with keys:"
                    " point CPIS_DATA_DIR (or CPIS_KEYS_*) at them; new keys would not open"
                    " what it holds"
                ) from None
            vault = FieldVault.from_keys(keys)
            await agree_on_keys(pool, keys, vault, source=key_source(settings))
            settings = await _agreed_person_index(settings, pool, start)
            async with _adapters(settings, pool, keys, vault, overrides) as runtime:
                yield runtime
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


@asynccontextmanager
async def _adapters(
    settings: Settings,
    pool: Pool,
    keys: KeyMaterial,
    vault: FieldVault,
    overrides: dict[str, Any],
) -> AsyncIterator[Runtime]:
    def made(name: str, make: Callable[[], Any]) -> Any:
        return overrides[name] if name in overrides else make()

    db = made("db", lambda: PgDatabase(pool, vault))
    clock: Clock = made("clock", SystemClock)
    cis2 = (
        Cis2Issuers(settings.cis2_issuers, now=lambda: clock.now().timestamp())
        if settings.cis2_issuers
        else None
    )
    tokens = made(
        "tokens",
        lambda: JwtTokenAuthority(
            signing_key=keys.signing_key,
            previous_keys=keys.previous_signing_keys,
            issuer=settings.public_base_url,
            ttl_seconds=settings.access_token_ttl,
            use_jti=db.use_jti,
            clock=clock,
            verify_id_token=cis2.viewer if cis2 is not None else None,
        ),
    )
    webhook = made(
        "webhook", lambda: WebhookSender(allowed_networks=settings.webhook_allowed_networks)
    )
    mesh = made("mesh", lambda: _mesh_client(settings))
    try:
        async with contextlib.AsyncExitStack() as stack:
            if "person_index" in overrides:
                person_index = overrides["person_index"]
            else:
                person_index = await stack.enter_async_context(
                    open_person_index(settings, pool, vault)
                )
            yield Runtime(
                settings=settings,
                pool=pool,
                db=db,
                keys=keys,
                vault=vault,
                tokens=tokens,
                clock=clock,
                person_index=person_index,
                outbox=made("outbox", lambda: PgOutboxStore(pool, vault)),
                subscriptions=made("subscriptions", lambda: PgSubscriptionStore(pool, vault)),
                retention=made("retention", lambda: PgRetention(pool, vault)),
                index_check=made("index_check", lambda: PgIndexCheckStore(pool, vault)),
                audit=made(
                    "audit",
                    lambda: PgAuditLog(
                        pool,
                        key=keys.audit_key,
                        public_keys=keys.audit_public_keys,
                        anchor_file=settings.data_dir / ANCHOR_FILE,
                    ),
                ),
                mesh_senders=made("mesh_senders", lambda: PgMeshSenders(pool)),
                poll_lock=made(
                    "poll_lock",
                    lambda: (
                        PgPollLock(pool, settings.mesh_mailbox)
                        if settings.mesh_mailbox and pool.get_max_size() > 1
                        else None
                    ),
                ),
                webhook=webhook,
                mesh=mesh,
                dispatch=made(
                    "dispatch",
                    lambda: DispatchSettings(
                        concurrency=settings.dispatch_concurrency,
                        horizon=timedelta(hours=settings.delivery_horizon_hours),
                    ),
                ),
                web_sessions=made("web_sessions", lambda: PgWebSessions(pool, vault)),
                identity_providers=made(
                    "identity_providers", lambda: OidcSignIn(signing_key=keys.signing_key)
                ),
                web_session_limits=made("web_session_limits", SessionLimits),
            )
    finally:
        await webhook.close()
        if mesh is not None:
            await mesh.close()
        if cis2 is not None:
            await cis2.close()


def _background(
    coro: Coroutine[Any, Any, None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx entry running ``coro`` for the app's lifetime."""

    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(coro)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def build_dispatcher(rt: Runtime, metrics: Metrics | None = None) -> Dispatcher:
    """The dispatcher over this runtime's outbox, rest-hook sender and MESH mailbox."""
    renderer = Renderer(base=rt.settings.fhir_base_url, keys=rt.keys, clock=rt.clock)
    channels = Channels(
        webhook=rt.webhook,
        mesh=rt.mesh,
        render_event=renderer.event,
        render_control=renderer.control,
        sign=renderer.sign,
    )

    def on_attempt(channel: str, ok: bool) -> None:
        if metrics is not None:
            metrics.delivery_attempts.labels(channel, "ok" if ok else "failed").inc()

    return Dispatcher(
        rt.outbox,
        rt.clock,
        channels={"rest-hook": channels.rest_hook, "mesh": channels.mesh},
        send_control=channels.control,
        settings=rt.dispatch,
        on_attempt=on_attempt,
    )


async def run_dispatcher(
    rt: Runtime, metrics: Metrics | None = None, queued: Signal | None = None
) -> None:
    dispatcher = build_dispatcher(rt, metrics)
    if queued is not None:
        queued.connect(dispatcher.wake)
    await asyncio.gather(dispatcher.run(), _queue_stats(rt.outbox, rt.clock, metrics))


async def _queue_stats(store: PgOutboxStore, clock: Clock, metrics: Metrics | None) -> None:
    """Queue depth and the age of the oldest undelivered row, for /metrics."""
    if metrics is None:
        return
    while True:
        with contextlib.suppress(Exception):
            stats = await store.stats(now=clock.now())
            metrics.outbox_pending.set(stats["outbox_pending"])
            metrics.deliveries_pending.set(stats["deliveries_pending"])
            metrics.deliveries_dead.set(stats["deliveries_dead"])
            metrics.oldest_pending_seconds.set(stats["oldest_pending_seconds"])
        await asyncio.sleep(5)


def mesh_inbox_configured(settings: Settings) -> bool:
    """Whether this service has a MESH mailbox of its own to take upload files from."""
    return bool(settings.mesh_url and settings.mesh_mailbox)


def build_mesh_uploads(rt: Runtime, metrics: Metrics | None = None) -> MeshUploads:
    """The MESH upload poller on this runtime's mailbox, database and person index."""
    settings = rt.settings
    assert rt.mesh is not None and settings.mesh_mailbox, "CPIS_MESH_URL and CPIS_MESH_MAILBOX"

    on_file = None
    if metrics is not None:
        files = Counter(
            "cpis_mesh_upload_files",
            "Upload files taken from the MESH inbox, by file code",
            ["file_code"],
            registry=metrics.registry,
        )

        def on_file(file_code: str) -> None:
            files.labels(file_code).inc()

    return MeshUploads(
        rt.mesh,
        rt.mesh_senders,
        db=rt.db,
        clock=rt.clock,
        index=rt.person_index,
        settings=MeshUploadSettings(
            poll_seconds=settings.mesh_poll_seconds, max_bytes=settings.max_upload_bytes
        ),
        lock=rt.poll_lock,
        on_file=on_file,
    )


async def run_mesh_uploads(rt: Runtime, metrics: Metrics | None = None) -> None:
    """Take upload files from the MESH inbox until cancelled (``serve`` and ``worker``)."""
    log.info("mesh_uploads_started", mailbox=rt.settings.mesh_mailbox)
    await build_mesh_uploads(rt, metrics).run()


def create_app(runtime: Runtime) -> web.Application:
    settings = runtime.settings
    app = web.Application(middlewares=[request_middleware], client_max_size=settings.max_body_bytes)
    app[SERVICES] = Services(
        settings=settings,
        db=runtime.db,
        clock=runtime.clock,
        tokens=runtime.tokens,
        metrics=Metrics(),
        person_index=runtime.person_index,
    )
    app[RATE_LIMITER] = RateLimiter(
        per_second=settings.rate_limit_per_second, burst=settings.rate_limit_burst
    )
    app[SOURCE_LIMITER] = SourceLimiter(
        per_second=settings.source_rate_limit_per_second,
        burst=settings.source_rate_limit_burst,
        trusted_proxies=settings.trusted_proxies,
    )
    app[REFUSALS] = RefusedRequests()
    app.cleanup_ctx.append(_background(app[REFUSALS].run(runtime.db, runtime.clock)))
    app[ORGANISATIONS] = OrganisationCache()
    app.cleanup_ctx.append(_background(run_audit_chainer(runtime.audit)))
    app.cleanup_ctx.append(_background(run_retention(runtime.retention, runtime.clock)))
    # Daily: tell owning LAs of NHS numbers the person index retired (a no-op without one).
    app.cleanup_ctx.append(
        _background(
            run_index_check(
                runtime.index_check,
                runtime.person_index,
                runtime.clock,
                interval=settings.index_check_hours * 3600,
            )
        )
    )
    app[NOTIFICATIONS_QUEUED] = Signal()
    if settings.workers_in_serve:
        app.cleanup_ctx.append(
            _background(run_dispatcher(runtime, app[SERVICES].metrics, app[NOTIFICATIONS_QUEUED]))
        )
        if mesh_inbox_configured(settings):
            app.cleanup_ctx.append(_background(run_mesh_uploads(runtime, app[SERVICES].metrics)))
    app[INBOX] = runtime.outbox
    # Every API route is served under the public base URL's path (https://host/cpis →
    # /cpis/FHIR/R4/…), so each link the service renders from that URL answers, with no
    # proxy rewriting paths; anything outside it is a 404 OperationOutcome.
    prefix = settings.path_prefix
    notifications.add_routes(app, prefix=prefix)
    uploads.add_routes(app, prefix=prefix)
    # Before fhir's routes: its /FHIR/R4/{type}/{id} read would answer for Subscription.
    subscriptions.add_routes(app, prefix=prefix, store=runtime.subscriptions)
    fhir.add_routes(app, prefix=prefix)
    la.add_routes(app, prefix=prefix)
    oauth.add_routes(app, prefix=prefix)
    ops.add_routes(app, prefix=prefix)  # the probes and /metrics also answer at the root
    openapi.add_routes(app, prefix=prefix)
    # The web pages (issue 12): HTML errors and security headers for them, inside the
    # request middleware so each page is still logged, counted and audited.
    app.middlewares.append(pages.pages_middleware)
    pages.add_routes(
        app,
        prefix=prefix,
        sign_in_services=SignInServices(
            db=runtime.db,
            clock=runtime.clock,
            store=runtime.web_sessions,
            providers=runtime.identity_providers,
            limits=runtime.web_session_limits,
        ),
    )
    return app
