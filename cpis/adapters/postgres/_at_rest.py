"""Values sealed to fit a text column, and the staff personal data an access event
carries, as they are kept at rest."""

from __future__ import annotations

import base64
import uuid
from typing import NamedTuple

import orjson

from cpis.model import Accessor
from cpis.ports.vault import Vault


def seal_text(vault: Vault, purpose: str, value: str) -> str:
    """A sealed value that fits a text column (e.g. a text[] of secrets)."""
    return "sealed:" + base64.b64encode(vault.seal(purpose, value)).decode("ascii")


def open_text(vault: Vault, purpose: str, text: str) -> str:
    if not text.startswith("sealed:"):
        return text  # written before values were sealed
    return vault.open(purpose, base64.b64decode(text[len("sealed:") :]))


# --- staff at rest ------------------------------------------------------------
#
# A viewer's user id, name, job role, RBAC role code and SDS role profile id
# are staff personal data (issue 9): access_event keeps them as one sealed
# value, and the user id also as a keyed hash (user_key) where rows are
# compared by user (the repeat-view and repeat-notification windows, and the
# audit log). The audit log and the outbox keep nothing of the person but
# that hash and, in the audit log, the sealed user id.

_VIEWER_PURPOSE = "viewer"
_USER_ID_PURPOSE = "user_id"


class Viewer(NamedTuple):
    """The personal part of an access event's viewer, as it is sealed at rest."""

    user_id: str
    user_name: str
    user_role: str
    role_code: str | None
    role_profile_id: str | None


def seal_viewer(vault: Vault, accessor: Accessor) -> bytes:
    fields = (
        accessor.user_id,
        accessor.user_name,
        accessor.user_role,
        accessor.role_code,
        accessor.role_profile_id,
    )
    return vault.seal(_VIEWER_PURPOSE, orjson.dumps(fields).decode())


def open_viewer(vault: Vault, sealed: bytes) -> Viewer:
    return Viewer(*orjson.loads(vault.open(_VIEWER_PURPOSE, sealed)))


def user_key(vault: Vault, user_id: str) -> bytes:
    """The keyed hash rows are compared by user on (access_event, outbox, audit_log)."""
    return vault.blind(_USER_ID_PURPOSE, user_id)


def seal_user_id(vault: Vault, user_id: str) -> bytes:
    return vault.seal(_USER_ID_PURPOSE, user_id)


def open_user_id(vault: Vault, sealed: bytes) -> str:
    return vault.open(_USER_ID_PURPOSE, sealed)


def practitioner_role_id(vault: Vault, accessor: Accessor) -> uuid.UUID:
    """The id of this person-in-a-role-at-a-place as a FHIR PractitionerRole.

    The same person, role and organisation always get the same id, so the 25
    visits include one PractitionerRole per viewer, not one per visit; the
    client system and trace id are not part of it. It is a keyed hash
    (Vault.blind), not a uuid5: an unkeyed hash of a name, a role and an
    organisation could be confirmed from a database dump by guessing them.
    Stored with the access event, and read back from there, never recomputed.
    """
    # A JSON array, so no field can run into the next (names come from callers).
    key = orjson.dumps(
        (
            accessor.user_id,
            accessor.user_name,
            accessor.user_role,
            accessor.role_code,
            accessor.role_profile_id,
            accessor.org_ods,
            accessor.org_name,
            accessor.user_verified,
        )
    ).decode()
    raw = bytearray(vault.blind("practitioner_role", key)[:16])
    raw[6] = raw[6] & 0x0F | 0x80  # RFC 9562 version 8: a custom layout
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(raw))
