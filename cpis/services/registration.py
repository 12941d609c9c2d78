"""Who takes part (SPEC §6, §7), as the operator registers them with ``cpis la`` and
``cpis client``: the local authorities (the phone numbers clinicians ring, the
repeat window, a MESH mailbox for notifications), and the client systems with
their role, ODS codes and public keys.

A change that cannot be made is a :class:`~cpis.model.Refused` value, worded for
the operator at the command line; nothing is changed then. The rules:

- an LA is added once: adding over one would silently replace the numbers
  clinicians ring, so its details change only through :func:`update_la`;
- every detail is checked as it would be stored (:mod:`cpis.la_details`);
- an LA client may act only for registered LAs; a health client's ODS codes
  are registered as organisations (their name and setting type are what LAs
  see of a lookup); only a health client exchanges CIS2 ID tokens;
- a client is registered once unless replaced on purpose, and replacing one
  never undoes its deactivation (:func:`deactivate_client`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cpis import ods
from cpis.errors import LaDetailsError, OdsCodeError
from cpis.la_details import checked_la, checked_name, checked_window
from cpis.model import Client, LocalAuthority, Organisation, Refused, Role, SettingType
from cpis.ports.database import Database

# A client's public keys: a JSON Web Key Set, {"keys": [...]}.
Keys = dict[str, object]


async def _la(db: Database, ods_code: str) -> LocalAuthority | None:
    async with db.transaction() as tx:
        return await tx.get_la(ods_code)


async def register_la(db: Database, la: LocalAuthority) -> LocalAuthority | Refused:
    """Register a new LA; the LA as stored (its details normalised)."""
    try:
        la = checked_la(la)
    except LaDetailsError as exc:
        return Refused(str(exc))
    if await _la(db, la.ods_code) is not None:
        return Refused(
            f"local authority {la.ods_code} is already registered;"
            " change its details with `cpis la update`"
        )
    await db.upsert_la(la)
    return la


async def update_la(
    db: Database,
    ods_code: str,
    *,
    name: str | None = None,
    office_phone: str | None = None,
    edt_phone: str | None = None,
    repeat_window_hours: int | None = None,
) -> LocalAuthority | Refused:
    """Change the details given of a registered LA (its version goes up); the LA now."""
    try:
        if name is not None:
            checked_name(name)
        if repeat_window_hours is not None:
            checked_window(repeat_window_hours)
        la = await db.update_la(
            ods_code,
            name=name,
            office_phone=office_phone,
            edt_phone=edt_phone,
            repeat_window_hours=repeat_window_hours,
        )
    except LaDetailsError as exc:
        return Refused(str(exc))
    if la is None:
        return Refused(f"local authority {ods_code} is not registered (cpis la add)")
    return la


async def set_la_mesh(
    db: Database, ods_code: str, *, mailbox: str, workflow_id: str
) -> str | Refused:
    """Send a registered LA's notifications to a MESH mailbox too; the mailbox id as kept."""
    if await _la(db, ods_code) is None:
        return Refused(f"local authority {ods_code} is not registered")
    mailbox = mailbox.strip().upper()
    await db.set_la_mesh(ods_code, mailbox, workflow_id)
    return mailbox


async def register_client(
    db: Database,
    *,
    client_id: str,
    role: Role,
    ods_codes: Sequence[str],
    keys: Callable[[], Keys | Refused],
    replace: bool = False,
    silent_only: bool = False,
    cis2_client_id: str | None = None,
    org_name: str | None = None,
    setting_type: SettingType = SettingType.OTHER,
) -> Client | Refused:
    """Register a client system (or, with ``replace``, replace its registration).

    ``keys`` gives its public keys once everything about the client itself has been
    checked: making a key pair writes the private half somewhere, which a refused
    registration should not have done.
    """
    existing = await db.get_client(client_id)
    if existing is not None and not replace:
        return Refused(
            f"client {client_id} is registered already; give --replace to replace its"
            " keys and registration"
        )
    shape = {Role.LA: ods.la_code, Role.HEALTH: ods.health_code}.get(role, ods.any_code)
    try:
        for code in ods_codes:
            shape(code)
    except OdsCodeError as exc:
        return Refused(f"--ods: {exc}")
    if role is Role.LA:
        async with db.transaction() as tx:
            for code in ods_codes:
                if await tx.get_la(code) is None:
                    return Refused(f"local authority {code} is not registered (cpis la add)")
    jwks = keys()
    if isinstance(jwks, Refused):
        return jwks
    if cis2_client_id and role is not Role.HEALTH:
        return Refused("only health clients exchange CIS2 ID tokens")
    if role is Role.HEALTH:
        for code in ods_codes:
            await db.upsert_organisation(Organisation(code, org_name or code, setting_type))
    client = Client(
        id=client_id,
        role=role,
        ods_codes=tuple(ods_codes),
        jwks=jwks,
        silent_only=silent_only,
        cis2_client_id=cis2_client_id or None,
        # Replacing keys never undoes a deactivation.
        active=existing.active if existing is not None else True,
    )
    await db.upsert_client(client)
    return client


async def deactivate_client(db: Database, client_id: str) -> Refused | None:
    """Stop a client getting tokens (those already issued live out their short lifetime)."""
    if not await db.set_client_active(client_id, active=False):
        return Refused(f"no client {client_id}")
    return None
