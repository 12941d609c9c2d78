"""The ``cpis`` command line: parse arguments, build Settings, call the app.

cpis serve [--demo]         API and background workers
cpis migrate                apply database migrations
cpis worker                 notification delivery and MESH uploads (probes and /metrics)
cpis la add ...             register a local authority
cpis la update ...          change a local authority's details
cpis client add ...         register a client system and its public key
cpis client deactivate      stop a client getting tokens
cpis token ...              get an access token from the running service
cpis demo-id-token          a CIS2-style ID token for the demo's nurse (after serve --demo)
cpis upload FILE            apply an LA's upload file
cpis person-index load FILE load the local person index
cpis trace FILE             propose NHS numbers for an LA's records
cpis audit verify           check the security audit log's signed chain
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog

from cpis import cli_person_index, cli_sign_in, ods, rules
from cpis.adapters.audit_log import ANCHOR_FILE, Anchor, AuditKeys, public_keys_of
from cpis.adapters.keys import parse_audit_public_keys
from cpis.app import Runtime, Start, build, create_app
from cpis.errors import CpisError, SettingsError, StartupError
from cpis.log import configure_logging
from cpis.model import LocalAuthority, Refused, Role, SettingType
from cpis.model.web import OrgKind
from cpis.phone import is_drama, uk_phone
from cpis.services import registration
from cpis.settings import Settings

log = structlog.get_logger("cpis")
_T = TypeVar("_T")


def _arg(check: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from one of the checks of :mod:`cpis.ods` or :mod:`cpis.phone`."""

    def parse(raw: str) -> _T:
        try:
            return check(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__  # argparse names the type in some messages
    return parse


_la_ods = _arg(ods.la_code)
_phone = _arg(uk_phone)


def _ods_list(raw: str) -> list[str]:
    codes = [ods.any_code(part) for part in raw.split(",") if part.strip()]
    if not codes:
        raise ValueError("no ODS code given")
    return codes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpis", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="register a demo LA, clients and plans, and say how to query them",
    )
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser(
        "worker",
        help="deliver notifications and take MESH upload files (over HTTP only /healthz,"
        " /readyz and /metrics)",
    )
    sub.add_parser("purge", help="delete what retention says must go (serve also does this)")
    up = sub.add_parser("upload", help="apply an LA's upload file (JSON or CSV) and show its codes")
    up.add_argument("file", type=Path)
    up.add_argument("--ack", type=Path, help="also write the acknowledgement here (JSON)")
    pi = sub.add_parser("person-index", help="the local person index").add_subparsers(
        dest="person_index_command", required=True
    )
    pi_load = pi.add_parser(
        "load", help="load a batch-trace style extract (schemas/person-index.md)"
    )
    pi_load.add_argument("file", type=Path)
    pi_load.add_argument(
        "--replace", action="store_true", help="a full extract: drop numbers the file lacks"
    )
    tr = sub.add_parser("trace", help="propose NHS numbers for an LA file's records")
    tr.add_argument("file", type=Path)
    tr.add_argument("--review", type=Path, help="review file to write (default FILE.review.csv)")

    notes = sub.add_parser("notifications", help="notification deliveries").add_subparsers(
        dest="notifications_command", required=True
    )
    notes.add_parser("failed", help="list deliveries that were given up on")
    retry = notes.add_parser("retry", help="put a failed delivery back in the queue")
    retry.add_argument("id", type=int, help="delivery id (from `cpis notifications failed`)")

    la = sub.add_parser("la", help="local authorities").add_subparsers(
        dest="la_command", required=True
    )
    la_add = la.add_parser("add", help="register a local authority")
    la_add.add_argument("--ods", type=_la_ods, required=True)
    la_add.add_argument("--name", required=True)
    la_add.add_argument("--office-phone", type=_phone, required=True, help="UK number")
    la_add.add_argument(
        "--edt-phone", type=_phone, required=True, help="emergency duty team (out of hours)"
    )
    la_add.add_argument(
        "--repeat-window-hours",
        type=int,
        default=rules.DEFAULT_NOTIFY_REPEAT_HOURS,
        help="repeat views of a child by one user at one setting within this many hours "
        f"make no second notification (default {rules.DEFAULT_NOTIFY_REPEAT_HOURS})",
    )
    la_update = la.add_parser("update", help="change a registered LA's details (only those given)")
    la_update.add_argument("--ods", type=_la_ods, required=True)
    la_update.add_argument("--name")
    la_update.add_argument("--office-phone", type=_phone, help="UK number")
    la_update.add_argument("--edt-phone", type=_phone, help="emergency duty team (out of hours)")
    la_update.add_argument("--repeat-window-hours", type=int)

    la_mesh = la.add_parser("mesh", help="send an LA's notifications to its MESH mailbox")
    la_mesh.add_argument("--ods", type=_la_ods, required=True)
    la_mesh.add_argument("--mailbox", required=True)
    la_mesh.add_argument("--workflow-id", default="CPIS_NOTIFICATION")

    cli_sign_in.add_parsers(la, sub, la_ods=_la_ods, health_ods=_arg(ods.health_code))

    client = sub.add_parser("client", help="client systems").add_subparsers(
        dest="client_command", required=True
    )
    c_add = client.add_parser("add", help="register a client system")
    c_add.add_argument("--id", required=True)
    c_add.add_argument("--role", choices=[r.value for r in Role], required=True)
    c_add.add_argument("--ods", type=_arg(_ods_list), required=True, help="CODE[,CODE...]")
    keys = c_add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", type=Path, help="the client's public keys (JWKS JSON file)")
    keys.add_argument(
        "--new-key", type=Path, help="generate a key pair; write the private key here"
    )
    c_add.add_argument("--alg", choices=["RS512", "ES256", "ES384", "EdDSA"], default="RS512")
    c_add.add_argument("--silent-only", action="store_true", help="lookups never notify")
    c_add.add_argument("--org-name", help="name of the (health) organisation, shown to LAs")
    c_add.add_argument(
        "--setting-type", choices=[s.value for s in SettingType], default=SettingType.OTHER.value
    )
    c_add.add_argument(
        "--cis2-client-id",
        help="(health) the client id its users' NHS CIS2 ID tokens are issued to: lets it "
        "exchange them for user-restricted tokens (CPIS_CIS2_ISSUERS names the trusted issuers)",
    )
    c_add.add_argument(
        "--replace",
        action="store_true",
        help="the client is registered already: replace its registration (keys, role, codes);"
        " a deactivated client stays deactivated",
    )

    c_off = client.add_parser(
        "deactivate", help="stop a client getting tokens (those issued live out their lifetime)"
    )
    c_off.add_argument("--id", required=True)

    tok = sub.add_parser("token", help="print an access token from the running service")
    tok.add_argument("--client", required=True)
    tok.add_argument("--key", type=Path, required=True, help="the client's private key (PEM)")
    tok.add_argument("--kid", help="key id registered for the key (default: the client id)")
    tok.add_argument("--url", help="token endpoint (default: CPIS_PUBLIC_BASE_URL/oauth2/token)")
    tok.add_argument(
        "--id-token",
        help="a user's CIS2 ID token: exchange it (RFC 8693) for a user-restricted token",
    )
    demo_tok = sub.add_parser(
        "demo-id-token",
        help="print a CIS2-style ID token for the demo's nurse, signed by the demo issuer "
        "that `cpis serve --demo` runs",
    )
    demo_tok.add_argument(
        "--issuer", help="the demo issuer's URL (default: CPIS_PUBLIC_BASE_URL/demo/cis2)"
    )

    keys_cmd = sub.add_parser("keys", help="key material in CPIS_DATA_DIR/keys").add_subparsers(
        dest="keys_command", required=True
    )
    rotate = keys_cmd.add_parser(
        "rotate", help="make a new active key, keeping old ones to open/verify what they made"
    )
    rotate.add_argument("kind", choices=["data", "signing", "audit"])

    audit = sub.add_parser("audit", help="security audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check every seal's signature, the chain, and that no line is missing",
        description="Seals what is pending, then checks the whole audit log and says what it"
        " checked. Without --anchor or --anchor-file, the anchor this service last wrote to"
        " its data directory (if any) is used.",
    )
    anchor = verify.add_mutually_exclusive_group()
    anchor.add_argument(
        "--anchor",
        metavar="[BATCH:]HASH",
        help="a seal's hash kept off this box (from an audit_sealed log line, the anchor"
        " file, or an earlier verify): the chain must still contain it",
    )
    anchor.add_argument(
        "--anchor-file", type=Path, help="an anchor file copied off this box (audit-anchor.json)"
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        help="PEM file of the audit public keys to check signatures with, instead of this"
        " service's own keys",
    )
    return p


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


async def _with_runtime(
    settings: Settings,
    fn: Callable[[Runtime], Coroutine[Any, Any, int]],
    *,
    start: Start = Start.ADMIN,
) -> int:
    async with build(settings, start=start) as rt:
        return await fn(rt)


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


async def _serve(settings: Settings, demo: bool) -> int:
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


def _drama_note(*numbers: str) -> None:
    for number in numbers:
        if is_drama(number):
            print(
                f"note: {number} is in a range Ofcom keeps for TV drama: it rings nobody"
                " (right for a demo or a test, never for a real LA)",
                file=sys.stderr,
            )


def _show_la(la: LocalAuthority) -> str:
    return (
        f"{la.ods_code} {la.name} (version {la.version}): office hours {la.office_phone},"
        f" emergency duty team {la.edt_phone}, repeat window {la.repeat_window_hours} h"
    )


async def _la_add(rt: Runtime, args: argparse.Namespace) -> int:
    la = await registration.register_la(
        rt.db,
        LocalAuthority(
            ods_code=args.ods,
            name=args.name,
            office_phone=args.office_phone,
            edt_phone=args.edt_phone,
            repeat_window_hours=args.repeat_window_hours,
        ),
    )
    if isinstance(la, Refused):
        print(f"error: {la.reason}", file=sys.stderr)
        return 2
    _drama_note(la.office_phone, la.edt_phone)
    print(f"local authority registered: {_show_la(la)}")
    return 0


async def _la_update(rt: Runtime, args: argparse.Namespace) -> int:
    changes = {
        "name": args.name,
        "office_phone": args.office_phone,
        "edt_phone": args.edt_phone,
        "repeat_window_hours": args.repeat_window_hours,
    }
    if all(v is None for v in changes.values()):
        print(
            "error: nothing to change: give --name, --office-phone, --edt-phone"
            " or --repeat-window-hours",
            file=sys.stderr,
        )
        return 2
    la = await registration.update_la(
        rt.db,
        args.ods,
        name=args.name,
        office_phone=args.office_phone,
        edt_phone=args.edt_phone,
        repeat_window_hours=args.repeat_window_hours,
    )
    if isinstance(la, Refused):
        print(f"error: {la.reason}", file=sys.stderr)
        return 2
    _drama_note(*(n for n in (args.office_phone, args.edt_phone) if n is not None))
    print(f"local authority updated: {_show_la(la)}")
    return 0


async def _client_deactivate(rt: Runtime, args: argparse.Namespace) -> int:
    refused = await registration.deactivate_client(rt.db, args.id)
    if refused is not None:
        print(f"error: {refused.reason}", file=sys.stderr)
        return 2
    print(
        f"client {args.id} deactivated: it gets no new token from now on; a token already"
        f" issued expires within {rt.settings.access_token_ttl} s (CPIS_ACCESS_TOKEN_TTL)"
    )
    return 0


def _client_keys(args: argparse.Namespace) -> registration.Keys | Refused:
    """The client's public keys: a new key pair (its private key written to --new-key),
    or the JWKS file given."""
    from cpis.adapters.tokens import generate_client_key

    if args.new_key:
        pem, jwks = generate_client_key(args.alg, kid=args.id)
        args.new_key.parent.mkdir(parents=True, exist_ok=True)
        args.new_key.write_bytes(pem)
        args.new_key.chmod(0o600)
        return dict(jwks)
    try:
        given = orjson.loads(args.jwks.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return Refused(f"cannot read a JWKS from {args.jwks}: {exc}")
    if not isinstance(given, dict) or not isinstance(given.get("keys"), list) or not given["keys"]:
        return Refused("the JWKS must be an object with a non-empty 'keys' list")
    return given


async def _client_add(rt: Runtime, args: argparse.Namespace) -> int:
    client = await registration.register_client(
        rt.db,
        client_id=args.id,
        role=Role(args.role),
        ods_codes=args.ods,
        keys=lambda: _client_keys(args),
        replace=args.replace,
        silent_only=args.silent_only,
        cis2_client_id=args.cis2_client_id,
        org_name=args.org_name,
        setting_type=SettingType(args.setting_type),
    )
    if isinstance(client, Refused):
        print(f"error: {client.reason}", file=sys.stderr)
        return 2
    where = f"; private key written to {args.new_key}" if args.new_key else ""
    print(f"client {args.id} registered as {client.role.value} for {','.join(args.ods)}{where}")
    return 0


def _assertion(pem: bytes, client_id: str, url: str, kid: str) -> str:
    """A client assertion signed with the key in ``pem``, its algorithm chosen by key type."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from cpis.adapters.tokens import make_client_assertion

    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS512"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        alg = "ES384" if key.curve.name == "secp384r1" else "ES256"
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    else:
        raise ValueError("unsupported key type")
    return make_client_assertion(pem, client_id=client_id, token_url=url, kid=kid, alg=alg)  # type: ignore[arg-type]


async def _token(settings: Settings, args: argparse.Namespace) -> int:
    import aiohttp

    url = args.url or settings.token_url
    try:
        assertion = _assertion(args.key.read_bytes(), args.client, url, args.kid or args.client)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot use the key in {args.key}: {exc}", file=sys.stderr)
        return 2
    from cpis.web.oauth import ASSERTION_TYPE, ID_TOKEN_TYPE, TOKEN_EXCHANGE

    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    if args.id_token:
        form.update(
            grant_type=TOKEN_EXCHANGE, subject_token=args.id_token, subject_token_type=ID_TOKEN_TYPE
        )
    try:
        async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
            body = await resp.json(content_type=None)
    except aiohttp.ClientError as exc:
        print(f"error: cannot reach {url}: {exc} (is `cpis serve` running?)", file=sys.stderr)
        return 1
    if resp.status != 200 or "access_token" not in body:
        print(
            f"error: token refused ({resp.status}): {body.get('error_description', body)}",
            file=sys.stderr,
        )
        return 1
    print(body["access_token"])
    return 0


def _audit_verify_inputs(
    settings: Settings, args: argparse.Namespace
) -> tuple[Anchor | None, str | None, AuditKeys | None]:
    """The anchor to check against (and where it came from) and any public keys given.

    Raises ValueError or OSError with a message fit for the operator.
    """
    anchor, source = None, None
    if args.anchor:
        anchor, source = Anchor.parse(args.anchor), "--anchor"
    elif args.anchor_file:
        anchor, source = Anchor.from_file(args.anchor_file), str(args.anchor_file)
    elif (settings.data_dir / ANCHOR_FILE).exists():
        # Read before verify seals anything, which rewrites the file.
        path = settings.data_dir / ANCHOR_FILE
        anchor, source = Anchor.from_file(path), str(path)
    keys = None
    if args.public_key:
        found = parse_audit_public_keys(args.public_key.read_bytes(), source=str(args.public_key))
        if not found:
            raise ValueError(f"{args.public_key} holds no PEM public key")
        keys = public_keys_of(found)
    return anchor, source, keys


async def _audit_verify(rt: Runtime, args: argparse.Namespace) -> int:
    """``cpis audit verify``: what was checked, then intact (0) or where it broke (1)."""
    try:
        anchor, source, keys = _audit_verify_inputs(rt.settings, args)
    except (ValueError, OSError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if anchor is not None:
        print(f"checking against the anchor from {source}: {anchor}")
    report = await rt.audit.verify(anchor=anchor, public_keys=keys)
    for line in report.lines():
        print(line)
    if report.intact:
        print("audit log intact")
        return 0
    where = "" if report.broken_seq is None else f" (at seq {report.broken_seq})"
    print(f"audit log broken{where}: {report.problem}", file=sys.stderr)
    return 1


def _rotate_keys(settings: Settings, kind: str) -> int:
    """Rotate keys kept in the data directory; keys given by CPIS_KEYS_* are the operator's."""
    from cpis.adapters.keys import (
        AUDIT_KEY_FILE,
        DATA_KEYS_FILE,
        SIGNING_KEY_FILE,
        rotate_audit_key,
        rotate_data_key,
        rotate_signing_key,
    )

    given, name, variable = {
        "data": (settings.keys_data, DATA_KEYS_FILE, "CPIS_KEYS_DATA"),
        "signing": (settings.keys_signing, SIGNING_KEY_FILE, "CPIS_KEYS_SIGNING"),
        "audit": (settings.keys_audit, AUDIT_KEY_FILE, "CPIS_KEYS_AUDIT"),
    }[kind]
    if given is not None:
        print(f"error: the {kind} keys come from {variable}; rotate them there", file=sys.stderr)
        return 2
    path = settings.keys_dir.absolute() / name
    if not path.exists():
        # Rotating in the wrong directory would make a key no database was sealed with.
        raise StartupError(
            f"no {kind} keys to rotate: {path} does not exist (set CPIS_DATA_DIR to the data"
            " directory `cpis serve` uses)"
        )
    if kind == "data":
        kid = rotate_data_key(settings.keys_dir)
        print(f"new active data key {kid}; restart every replica to start sealing with it")
    elif kind == "signing":
        rotate_signing_key(settings.keys_dir)
        print("new signing key; the old public key stays published until the next rotation")
    else:
        kid = rotate_audit_key(settings.keys_dir)
        print(
            f"new audit key {kid}; restart every replica to sign seals with it (old public keys"
            " are kept: seals never expire)"
        )
    return 0


async def _la_mesh(rt: Runtime, args: argparse.Namespace) -> int:
    mailbox = await registration.set_la_mesh(
        rt.db, args.ods, mailbox=args.mailbox, workflow_id=args.workflow_id
    )
    if isinstance(mailbox, Refused):
        print(f"error: {mailbox.reason}", file=sys.stderr)
        return 2
    print(f"notifications for {args.ods} will also go to MESH mailbox {args.mailbox.upper()}")
    return 0


async def _notifications(rt: Runtime, args: argparse.Namespace) -> int:
    from cpis.services import deliveries

    store = rt.outbox
    if args.notifications_command == "retry":
        if await deliveries.retry(store, rt.clock, delivery_id=args.id, actor=None):
            print(f"delivery {args.id} queued again")
            return 0
        print(f"error: no failed delivery {args.id}", file=sys.stderr)
        return 1
    rows = await deliveries.failed(store, la_ods=None)
    for r in rows:
        print(
            f"{r.id}\t{r.la_ods}\t{r.channel}\t{r.attempts} attempts\t"
            f"{r.created_at:%Y-%m-%d %H:%M}\t{r.last_error}"
        )
    if not rows:
        print("no failed deliveries")
    return 0


async def _upload(rt: Runtime, args: argparse.Namespace) -> int:
    """Apply a file as `POST /la/v1/uploads` would, with a progress bar and a summary."""
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from cpis.formats.acknowledgement import acknowledgement_json
    from cpis.model.uploads import UploadFile
    from cpis.services import uploads

    console = Console(stderr=True)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with Progress(console=console, transient=True) as bar:
        task: TaskID | None = None

        def report(done: int, total: int) -> None:
            # The bar appears once the file has parsed: a malformed one shows none.
            nonlocal task
            if task is None:
                task = bar.add_task(f"applying {args.file.name}", total=total)
            bar.update(task, completed=done)

        # The operator may upload for any LA: no sender to hold the file's LA to.
        file = UploadFile(data, filename=args.file.name)
        ack = await uploads.receive(rt.db, rt.clock, file, index=rt.person_index, progress=report)
    if args.ack:
        args.ack.write_bytes(orjson.dumps(acknowledgement_json(ack), option=orjson.OPT_INDENT_2))
    # The file code on its own line: as a table title it wraps at the table's width.
    Console().print(f"{args.file.name}: {ack.file_code}", highlight=False)
    table = Table()
    table.add_column("code")
    table.add_column("records", justify="right")
    for code, count in ack.summary.items():
        table.add_row(code, str(count))
    Console().print(table)
    if ack.reason:
        print(ack.reason)
    for rec in ack.records:
        if rec.code != "CPR06":
            print(f"record {rec.record} ({rec.plan_id}): {rec.code} {rec.reason or ''}")
    return 0 if ack.file_code in ("CPF02", "CPF03") else 1


async def _purge(rt: Runtime) -> int:
    from cpis.services import plans

    result = await plans.purge(rt.retention, rt.clock)
    print(
        f"purged {result.plans} plans, {result.access_events} access events,"
        f" {result.notifications} notifications"
    )
    return 0


async def _worker(settings: Settings) -> int:
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


async def _migrate(rt: Runtime) -> int:
    print("migrations current")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    try:
        if args.command == "serve":
            return _run(_serve(settings, args.demo))
        if args.command == "token":
            return _run(_token(settings, args))
        if args.command == "demo-id-token":
            from cpis import demo

            return demo.print_id_token(settings, issuer=args.issuer)
        if args.command == "migrate":
            return _run(_with_runtime(settings, _migrate, start=Start.SETUP))
        if args.command == "la" and args.la_command == "sign-in":
            return _run(
                _with_runtime(settings, lambda rt: cli_sign_in.sign_in(rt, args, OrgKind.LA))
            )
        if args.command == "la":
            action = {"add": _la_add, "update": _la_update, "mesh": _la_mesh}[args.la_command]
            return _run(_with_runtime(settings, lambda rt: action(rt, args)))
        if args.command == "org":
            return _run(
                _with_runtime(settings, lambda rt: cli_sign_in.sign_in(rt, args, OrgKind.HEALTH))
            )
        if args.command == "upload":
            return _run(_with_runtime(settings, lambda rt: _upload(rt, args)))
        if args.command == "person-index":
            return _run(_with_runtime(settings, lambda rt: cli_person_index.load(rt, args)))
        if args.command == "trace":
            return _run(_with_runtime(settings, lambda rt: cli_person_index.trace(rt, args)))
        if args.command == "purge":
            return _run(_with_runtime(settings, _purge))
        if args.command == "worker":
            return _run(_worker(settings))
        if args.command == "notifications":
            return _run(_with_runtime(settings, lambda rt: _notifications(rt, args)))
        if args.command == "client":
            act = _client_add if args.client_command == "add" else _client_deactivate
            return _run(_with_runtime(settings, lambda rt: act(rt, args)))
        if args.command == "keys":
            return _rotate_keys(settings, args.kind)
        if args.command == "audit":
            return _run(_with_runtime(settings, lambda rt: _audit_verify(rt, args)))
    except (CpisError, SettingsError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        return _unexpected(exc)
    return 2


def _unexpected(exc: Exception) -> int:
    """One line for what no one foresaw (issue 9, item 15): its kind, and for a file or
    socket what the system said. The traceback goes to the log at debug level only,
    without a library's message (which might quote a value it choked on)."""
    log.debug("unexpected_error", exc_info=exc)
    what = type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        what = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    print(
        f"error: {what} (unexpected; CPIS_LOG_LEVEL=debug logs where it happened)",
        file=sys.stderr,
    )
    return 1
