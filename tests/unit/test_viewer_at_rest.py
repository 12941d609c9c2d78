"""A viewer (a clinician) at rest: sealed, compared by a keyed hash, named by a keyed id.

Issue 9 item 4: staff ids, names and roles are personal data, so the storage
adapter seals them (cpis.adapters.postgres) and gives the PractitionerRole id
as a keyed hash rather than an unkeyed uuid5 that a dump's reader could
confirm by guessing a name.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import (
    open_viewer,
    practitioner_role_id,
    seal_viewer,
    user_key,
)
from cpis.model import Accessor, SettingType

ACC = Accessor(
    client_id="ed-system",
    org_ods="XED01",
    org_name="Northshire General Hospital Emergency Department",
    setting_type=SettingType.ED,
    user_id="555021935107",
    user_name="Dr Alex Example",
    user_role="Consultant in emergency medicine",
    trace_id="trace-1",
)


def vault() -> FieldVault:
    return FieldVault(
        data_keys={"k1": secrets.token_bytes(32)}, active_kid="k1", hash_key=secrets.token_bytes(32)
    )


def test_one_practitioner_role_per_person_role_and_place() -> None:
    """The same viewer in the same role at the same place is one PractitionerRole, whatever
    the client system or trace id; another role, place, profile or verification is another."""
    v = vault()
    pr = practitioner_role_id(v, ACC)
    same = dataclasses.replace(ACC, client_id="other-system", trace_id="other-trace")
    assert practitioner_role_id(v, same) == pr
    for changed in (
        dataclasses.replace(ACC, org_ods="RXX02"),
        dataclasses.replace(ACC, user_role="Staff Nurse"),
        dataclasses.replace(ACC, role_profile_id="555021935999"),
        dataclasses.replace(ACC, user_verified=True),
        dataclasses.replace(ACC, user_name="Dr Alex Other"),
    ):
        assert practitioner_role_id(v, changed) != pr


def test_the_practitioner_role_id_is_keyed_and_a_well_formed_uuid() -> None:
    """Without the service's hash key the id cannot be recomputed from a guessed name, role
    and organisation: another key gives another id. It is an RFC 9562 UUID (version 8)."""
    pr = practitioner_role_id(vault(), ACC)
    assert practitioner_role_id(vault(), ACC) != pr
    assert pr.version == 8 and pr.variant == uuid.RFC_4122
    namespace = uuid.UUID("5b0f2f0e-7b8e-4d0c-9a43-2f6c4b1d8e21")  # the old, unkeyed uuid5's
    assert pr != uuid.uuid5(namespace, ACC.user_id)


def test_the_viewer_is_sealed_and_opens_again() -> None:
    """The sealed viewer holds none of its values in clear, opens to all of them, and a
    value sealed for another column does not open as a viewer."""
    v = vault()
    acc = dataclasses.replace(ACC, role_code="R8001", role_profile_id="555021935999")
    sealed = seal_viewer(v, acc)
    for value in (acc.user_id, acc.user_name, acc.user_role, "R8001", "555021935999"):
        assert value.encode() not in sealed
    opened = open_viewer(v, sealed)
    assert opened == (acc.user_id, acc.user_name, acc.user_role, "R8001", "555021935999")
    assert open_viewer(v, seal_viewer(v, ACC)).role_profile_id is None


def test_the_user_key_compares_users_without_naming_them() -> None:
    """The same user id always has the same key under one hash key (the repeat-view and
    repeat-notification rules compare on it); another user, or another key, another."""
    v = vault()
    assert user_key(v, "555021935107") == user_key(v, "555021935107")
    assert user_key(v, "555021935107") != user_key(v, "555021935108")
    assert user_key(vault(), "555021935107") != user_key(v, "555021935107")
    assert b"555021935107" not in user_key(v, "555021935107")
