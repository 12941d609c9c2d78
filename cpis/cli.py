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
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog

from cpis import cli_keys, cli_person_index, cli_serve, cli_sign_in, ods, rules
from cpis.app import Runtime, Start, build
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
            return _run(cli_serve.serve(settings, args.demo))
        if args.command == "token":
            return _run(cli_keys.token(settings, args))
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
            return _run(cli_serve.worker(settings))
        if args.command == "notifications":
            return _run(_with_runtime(settings, lambda rt: _notifications(rt, args)))
        if args.command == "client":
            act = _client_add if args.client_command == "add" else _client_deactivate
            return _run(_with_runtime(settings, lambda rt: act(rt, args)))
        if args.command == "keys":
            return cli_keys.rotate_keys(settings, args.kind)
        if args.command == "audit":
            return _run(_with_runtime(settings, lambda rt: cli_keys.audit_verify(rt, args)))
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
