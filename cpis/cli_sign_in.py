"""``cpis la sign-in`` and ``cpis org sign-in``: how an organisation's people sign in to
the web pages (issue 12; docs/sign-in.md). Wired into the parser by :mod:`cpis.cli`;
the use case is :func:`cpis.services.web_sign_in.register_sign_in`.

An LA's provider is its own tenant (Entra ID or similar), its people's roles in a
claim (``--roles-claim``, Entra ID's ``roles``) whose values are mapped with
``--caseworker VALUE`` and ``--manager VALUE``. A health organisation's is NHS
CIS2, its people clinicians by their selected role (``--role-code`` limits which
RBAC job roles may look children up). A client secret is read from a file, never
the command line (which other users of the machine can see).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cpis.app import Runtime
from cpis.model import Organisation, Refused, SettingType
from cpis.model.web import OrgKind, SignInConfig, WebRole


def add_parsers(
    la: argparse._SubParsersAction,  # type: ignore[type-arg]
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    *,
    la_ods: Callable[[str], str],
    health_ods: Callable[[str], str],
) -> None:
    la_sign_in = la.add_parser("sign-in", help="how the LA's people sign in to the web pages")
    la_sign_in.add_argument("ods", type=la_ods, help="the LA's ODS code")
    _common(la_sign_in, roles_claim="roles")
    la_sign_in.add_argument(
        "--caseworker",
        action="append",
        default=[],
        metavar="VALUE",
        help="a value of the roles claim that makes a caseworker (default: caseworker)",
    )
    la_sign_in.add_argument(
        "--manager",
        action="append",
        default=[],
        metavar="VALUE",
        help="a value of the roles claim that makes a manager (default: manager)",
    )
    org = sub.add_parser("org", help="health organisations").add_subparsers(
        dest="org_command", required=True
    )
    org_sign_in = org.add_parser("sign-in", help="how the organisation's people sign in (CIS2)")
    org_sign_in.add_argument("ods", type=health_ods, help="the organisation's ODS code")
    _common(org_sign_in, roles_claim="selected_roleid")
    org_sign_in.add_argument(
        "--role-code",
        action="append",
        default=[],
        metavar="CODE",
        help="a CIS2 RBAC job role code (R8001) that may look children up; default any",
    )
    org_sign_in.add_argument("--name", help="register the organisation with this name")
    org_sign_in.add_argument(
        "--setting-type",
        choices=[s.value for s in SettingType],
        default=SettingType.OTHER.value,
        help="with --name: the kind of setting (ED, UTC, MIU...)",
    )


def _common(parser: argparse.ArgumentParser, *, roles_claim: str) -> None:
    parser.add_argument("--issuer", required=True, help="the provider's issuer URL, as in its iss")
    parser.add_argument("--client-id", required=True, help="the service's client id there")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--client-secret-file", type=Path, help="a file holding the client secret (else PKCE only)"
    )
    how.add_argument(
        "--private-key-jwt",
        action="store_true",
        help="authenticate with a JWT signed by the service's key (its JWKS is at"
        " {CPIS_PUBLIC_BASE_URL}/.well-known/jwks.json: register that with the provider)",
    )
    parser.add_argument(
        "--roles-claim",
        default=roles_claim,
        # CIS2's role comes from selected_roleid and nhsid_nrbac_roles, always.
        help="the ID token claim holding the person's roles (default roles, Entra ID's)"
        if roles_claim == "roles"
        else argparse.SUPPRESS,
    )
    parser.add_argument("--scope", default="", help="scopes to ask for (default: by kind)")


def _secret(path: Path | None) -> str | Refused | None:
    if path is None:
        return None
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        return Refused(f"cannot read the client secret file {path}: {type(exc).__name__}")
    return secret or Refused(f"the client secret file {path} is empty")


async def sign_in(rt: Runtime, args: argparse.Namespace, kind: OrgKind) -> int:
    from cpis.services import web_sign_in

    secret = _secret(args.client_secret_file)
    if isinstance(secret, Refused):
        print(f"error: {secret.reason}", file=sys.stderr)
        return 2
    if kind is OrgKind.LA:
        values = {v: WebRole.CASEWORKER for v in args.caseworker or ["caseworker"]}
        values.update({v: WebRole.MANAGER for v in args.manager or ["manager"]})
    else:
        values = {code: WebRole.CLINICIAN for code in args.role_code}
    config = SignInConfig(
        org_ods=args.ods,
        kind=kind,
        issuer=args.issuer,
        client_id=args.client_id,
        client_secret=secret,
        roles_claim=args.roles_claim,
        role_values=values,
        scope=args.scope,
        private_key_jwt=args.private_key_jwt,
    )
    organisation = None
    if kind is OrgKind.HEALTH and args.name:
        organisation = Organisation(args.ods, args.name, SettingType(args.setting_type))
    done = await web_sign_in.register_sign_in(
        rt.db, rt.web_sessions, config, organisation=organisation
    )
    if isinstance(done, Refused):
        print(f"error: {done.reason}", file=sys.stderr)
        return 2
    mapped = ", ".join(f"{k} -> {v.value}" for k, v in done.role_values.items()) or "any role"
    how = {
        "private_key_jwt": "a JWT signed with the service's key, whose public keys are at"
        f" {rt.settings.public_base_url}/.well-known/jwks.json",
        "client_secret_basic": "a client secret",
        "none": "PKCE only",
    }[done.token_auth]
    print(
        f"{done.org_ods} signs in with {done.issuer} as client {done.client_id}"
        f" ({how}); roles from {done.roles_claim}: {mapped}"
    )
    return 0
