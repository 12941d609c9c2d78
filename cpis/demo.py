"""``cpis serve --demo``: a demo LA, an ED and an LA client, and a few plans.

Everything is synthetic: 999-range NHS numbers, Ofcom drama phone numbers,
made-up names. Seeding is idempotent, so restarting the demo keeps its keys
and plans.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import shlex
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from cpis import rules
from cpis.adapters.tokens import generate_client_key
from cpis.adapters.webhook import LOOPBACK_NETWORKS
from cpis.app import Runtime
from cpis.demo_identity import (
    DEMO_CIS2_CLIENT_ID,
    DEMO_NURSE,
    DEMO_PATH,
    DemoIssuer,
    key_file,
    load_or_create_key,
)
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import (
    Client,
    LocalAuthority,
    Organisation,
    PlanFields,
    PlanType,
    Principal,
    Role,
    SettingType,
)
from cpis.model.web import OrgKind, SignInConfig, WebRole
from cpis.services import plans, web_sign_in
from cpis.settings import Settings

DEMO_LA = LocalAuthority(
    ods_code="XDM01",
    name="Demoshire County Council",
    office_phone="01632 960000",
    edt_phone="01632 960999",
    repeat_window_hours=rules.DEFAULT_NOTIFY_REPEAT_HOURS,
)
DEMO_ED = Organisation("XED01", "Demoshire General Hospital Emergency Department", SettingType.ED)
ED_CLIENT = "demo-ed"
LA_CLIENT = "demo-la"
# The demo OpenID provider `make run` starts beside the service (demo/oidc), and the
# web client registered with it (demo/oidc/clients.json): both demo organisations'
# people sign in to the web pages there (docs/sign-in.md); its address is the setting
# CPIS_DEMO_OIDC_ISSUER (Settings.demo_oidc_issuer).
DEMO_WEB_CLIENT = "cpis-demo-web"


def demo_sign_ins(issuer: str) -> tuple[SignInConfig, ...]:
    """How each demo organisation's people sign in: at the demo provider ``issuer``."""
    return (
        SignInConfig(
            org_ods=DEMO_LA.ods_code,
            kind=OrgKind.LA,
            issuer=issuer,
            client_id=DEMO_WEB_CLIENT,
            role_values={"caseworker": WebRole.CASEWORKER, "manager": WebRole.MANAGER},
        ),
        SignInConfig(
            org_ods=DEMO_ED.ods_code,
            kind=OrgKind.HEALTH,
            issuer=issuer,
            client_id=DEMO_WEB_CLIENT,
            roles_claim="selected_roleid",
        ),
    )


DEMO_PEOPLE = (
    ("social.worker", "a social worker (caseworker) at", DEMO_LA.name),
    ("manager", "a team manager (manager) at", DEMO_LA.name),
    ("clinician", "an ED nurse (clinician) at", DEMO_ED.name),
)


@dataclass(frozen=True)
class DemoChild:
    nhs_number: str
    plan_id: str
    fields: PlanFields


def demo_children() -> list[DemoChild]:
    child, looked_after, mother = synthetic_numbers(3)
    return [
        DemoChild(
            child,
            "DEMO-CPP-0001",
            PlanFields(
                child,
                PlanType.CPP,
                date(2026, 3, 2),
                None,
                None,
                date(2016, 7, 14),
                "Testchild",
                "Alexander",
            ),
        ),
        DemoChild(
            looked_after,
            "DEMO-LAC-0001",
            PlanFields(
                looked_after,
                PlanType.LAC,
                date(2025, 9, 15),
                None,
                None,
                date(2012, 1, 5),
                "Examplefamily",
                "Sam",
            ),
        ),
        DemoChild(
            mother,
            "DEMO-UCPP-0001",
            PlanFields(
                mother,
                PlanType.UCPP,
                date(2026, 8, 1),
                date(2027, 2, 20),
                None,
                None,
                "Testmother",
                "Jo",
            ),
        ),
    ]


async def _client_with_key(
    rt: Runtime,
    client_id: str,
    role: Role,
    ods: str,
    key_path: Path,
    *,
    cis2_client_id: str | None = None,
) -> None:
    existing = await rt.db.get_client(client_id)
    if key_path.exists() and existing is not None:
        if existing.cis2_client_id != cis2_client_id:  # a demo from before CIS2 sign-in
            await rt.db.upsert_client(dataclasses.replace(existing, cis2_client_id=cis2_client_id))
        return
    pem, jwks = generate_client_key("ES256", kid=client_id)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(pem)
    key_path.chmod(0o600)
    await rt.db.upsert_client(
        Client(
            id=client_id,
            role=role,
            ods_codes=(ods,),
            jwks=jwks,
            cis2_client_id=cis2_client_id,
        )
    )


# --- the demo's stand-in for NHS CIS2 -------------------------------------------------


def demo_issuer_url(settings: Settings) -> str:
    return f"{settings.public_base_url}{DEMO_PATH}"


def demo_settings(settings: Settings) -> Settings:
    """``settings`` as ``serve --demo`` runs: trusting the demo's CIS2 issuer too, and,
    unless the operator named networks, letting rest-hooks reach this machine (the
    examples in docs/notifications.md subscribe a local receiver)."""
    url = demo_issuer_url(settings)
    if url not in settings.cis2_issuers:
        settings = dataclasses.replace(settings, cis2_issuers=(*settings.cis2_issuers, url))
    if not settings.webhook_allowed_networks:
        settings = dataclasses.replace(settings, webhook_allowed_networks=LOOPBACK_NETWORKS)
    return settings


def serve_demo_issuer(app: web.Application, settings: Settings) -> None:
    """Publish the demo issuer's discovery document and keys from this service."""
    url = demo_issuer_url(settings)
    issuer = DemoIssuer(url, load_or_create_key(key_file(settings.data_dir)))
    app.router.add_routes(issuer.routes(urlsplit(url).path))


def print_id_token(settings: Settings, *, issuer: str | None = None) -> int:
    """``cpis demo-id-token``: an hour's ID token for the demo nurse at the demo ED."""
    path = key_file(settings.data_dir)
    if not path.exists():
        print("error: start `cpis serve --demo` first (it makes the demo issuer)", file=sys.stderr)
        return 1
    signer = DemoIssuer(issuer or demo_issuer_url(settings), path.read_bytes())
    claims = signer.clinician_claims(
        audience=DEMO_CIS2_CLIENT_ID,
        user_id=DEMO_NURSE["user_id"],
        name=DEMO_NURSE["name"],
        role_profile_id=DEMO_NURSE["role_profile_id"],
        org_code=DEMO_ED.ods_code,
        org_name=DEMO_ED.name,
        lifetime_seconds=3600,
    )
    print(signer.id_token(claims))
    return 0


async def seed(rt: Runtime) -> list[DemoChild]:
    demo_dir = rt.settings.data_dir / "demo"
    await rt.db.upsert_la(DEMO_LA)
    await rt.db.upsert_organisation(DEMO_ED)
    await _client_with_key(
        rt,
        ED_CLIENT,
        Role.HEALTH,
        DEMO_ED.ods_code,
        demo_dir / "demo-ed.pem",
        cis2_client_id=DEMO_CIS2_CLIENT_ID,
    )
    await _client_with_key(rt, LA_CLIENT, Role.LA, DEMO_LA.ods_code, demo_dir / "demo-la.pem")
    for config in demo_sign_ins(rt.settings.demo_oidc_issuer):
        await web_sign_in.register_sign_in(rt.db, rt.web_sessions, config)
    la = Principal(client_id=LA_CLIENT, role=Role.LA, ods_codes=(DEMO_LA.ods_code,))
    children = demo_children()
    for c in children:
        existing = (
            await plans.get_plan(rt.db, principal=la, la_ods=DEMO_LA.ods_code, la_plan_id=c.plan_id)
            if await _exists(rt, c.plan_id)
            else None
        )
        if existing is None:
            await plans.put_plan(
                rt.db,
                rt.clock,
                principal=la,
                la_ods=DEMO_LA.ods_code,
                la_plan_id=c.plan_id,
                fields=c.fields,
                if_match=None,
            )
    return children


# The example extract travels in the package, so `serve --demo` works from an installed
# wheel; schemas/examples/person-index-example.csv is a link to it for the docs.
DEMO_INDEX = importlib.resources.files("cpis") / "demo_files" / "person-index-example.csv"


async def seed_person_index(rt: Runtime) -> int | None:
    """Load the example extract into the local index (an upsert: safe on every start),
    so the example uploads get the index's codes; None when the index is not local."""
    if rt.settings.person_index != "local":
        return None
    from cpis.adapters.postgres import load_person_index

    data = DEMO_INDEX.read_bytes()
    return (await load_person_index(rt.pool, rt.vault, data)).rows


async def _exists(rt: Runtime, plan_id: str) -> bool:
    async with rt.db.transaction() as tx:
        return await tx.get_plan(DEMO_LA.ods_code, plan_id) is not None


def _cpis_command() -> str:
    exe = Path(sys.argv[0])
    if exe.name == "__main__.py":  # started as `python -m cpis`
        return f"{shlex.quote(sys.executable)} -m cpis"
    try:
        return str(exe.resolve().relative_to(Path.cwd()))
    except ValueError:
        return "cpis" if exe.name == "cpis" else str(exe)


def instructions(rt: Runtime, children: list[DemoChild]) -> str:
    s = rt.settings
    cpis = _cpis_command()
    key = shlex.quote(str(s.data_dir / "demo" / "demo-ed.pem"))
    la_key = shlex.quote(str(s.data_dir / "demo" / "demo-la.pem"))
    child = children[0].nhs_number
    ident = f"https://fhir.nhs.uk/Id/nhs-number%7C{child}"
    user_headers = (
        '-H "Authorization: Bearer $TOKEN" -H "TraceID: demo-$RANDOM"'
        ' -H "IsUnscheduledAccessEvent: true"'
    )
    headers = (
        '-H "Authorization: Bearer $APP_TOKEN" -H "TraceID: demo-$RANDOM" '
        f'-H "NHSD-End-User-Organisation-ODS: {DEMO_ED.ods_code}" '
        '-H "NHSD-End-User-Id: 555021935107" -H "NHSD-End-User-Name: Demo Nurse" '
        '-H "NHSD-End-User-Role: Staff Nurse"'
    )
    fhir = s.fhir_base_url
    # Admin commands are separate processes reading their own CPIS_* settings:
    # they must be told of the same index and data directory as this server.
    env = [] if s.person_index == "none" else [f"CPIS_PERSON_INDEX={s.person_index}"]
    if s.data_dir != Path(".cpis"):
        env.append(f"CPIS_DATA_DIR={shlex.quote(str(s.data_dir))}")
    admin = " ".join([*env, cpis])
    viewers = (
        "_include=AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass"
        "%7CASSIGNED"
    )
    lines = [
        "",
        "CP-IS demo is running. Everything below is synthetic test data.",
        f"  Web pages:      {s.public_base_url}/   (sign in at the demo provider,"
        f" {s.demo_oidc_issuer}, password demo-password)",
        *(f"    {login:<14} {who} {org}" for login, who, org in DEMO_PEOPLE),
        f"    the clinician looks a child up at {s.public_base_url}/lookup"
        f" (try {children[0].nhs_number})",
        "    the social worker sees each lookup (the clinician's, the curl ones below) in"
        f" the inbox, {s.public_base_url}/inbox,",
        "    opens the child and acknowledges it; once the example files below are uploaded,"
        f" their acknowledgements are at {s.public_base_url}/uploads",
        f"  FHIR base:      {fhir}",
        f"  Local authority {DEMO_LA.ods_code} ({DEMO_LA.name}); ED {DEMO_ED.ods_code}",
        "  Demo subjects:  "
        + ", ".join(f"{c.nhs_number} ({c.fields.plan_type.value})" for c in children),
        "",
        "In another terminal, as an ED system built to NHS England's CP-IS API: its nurse",
        "signs in with CIS2 (here the demo's stand-in issuer), the system exchanges her ID",
        "token for a user-restricted token and sends only the guide's three headers:",
        f"  ID_TOKEN=$({admin} demo-id-token --issuer {demo_issuer_url(s)})",
        f"  TOKEN=$({cpis} token --client {ED_CLIENT} --key {key} --url {s.token_url}"
        ' --id-token "$ID_TOKEN")',
        f'  curl -s {user_headers} "{fhir}/CareTeam?patient:identifier={ident}"',
        "Then see that visit, and who viewed, in the child's recent visits:",
        f'  curl -s {user_headers} "{fhir}/AuditEvent?patient:identifier={ident}&{viewers}"',
        "Or application-restricted, naming the user in NHSD-End-User-* headers:",
        f"  APP_TOKEN=$({cpis} token --client {ED_CLIENT} --key {key} --url {s.token_url})",
        f'  curl -s {headers} "{fhir}/CareTeam?patient:identifier={ident}"',
        "As the LA, read or change a plan:",
        f"  LA_TOKEN=$({cpis} token --client {LA_CLIENT} --key {la_key} --url {s.token_url})",
        f'  curl -s -H "Authorization: Bearer $LA_TOKEN" {s.public_base_url}/la/v1/plans/'
        f"{children[0].plan_id}",
        "As the LA, receive attendance notifications: docs/notifications.md",
        "(subscribe with a FHIR rest-hook Subscription, or read GET /la/v1/notifications)",
        "As the LA, upload a daily file (schemas/uploads.md) and read its acknowledgement:",
        f"  {admin} upload schemas/examples/upload-example.json",
        f"  curl -s -H \"Authorization: Bearer $LA_TOKEN\" -H 'Content-Type: application/json'"
        " --data-binary @schemas/examples/upload-example-index.json"
        f" {s.public_base_url}/la/v1/uploads",
        f"Person index: {s.person_index}"
        + (
            " (schemas/examples/person-index-example.csv is loaded; trace NHS numbers with"
            f" {admin} trace schemas/examples/trace-example.csv)"
            if s.person_index == "local"
            else " (NHS numbers checked by check digit only; CPIS_PERSON_INDEX=local to change)"
        ),
        "",
    ]
    return "\n".join(lines)
