"""The CIS2 ID token verifier against a real local OpenID provider: discovery, keys, caching."""

from __future__ import annotations

import pytest

from cpis.adapters.cis2 import Cis2Issuers, viewer_from_claims
from cpis.errors import InvalidGrant, Unavailable
from tests.cis2_issuer import running_cis2

AUD = "ed-system.cis2"


async def test_keys_are_fetched_once_and_reused() -> None:
    """Discovery and the key set are fetched on first use and cached: a second token from
    the same issuer costs no request."""
    async with running_cis2() as cis2:
        issuers = Cis2Issuers([cis2.issuer])
        try:
            for _ in range(3):
                claims = await issuers.verify(cis2.id_token(cis2.nurse(audience=AUD)), audience=AUD)
                assert claims["sub"] == "555000000777"
            assert len(cis2.requests) == 2
            assert cis2.requests[0].endswith("/.well-known/openid-configuration")
        finally:
            await issuers.close()


async def test_a_rotated_key_is_fetched_when_a_token_names_it() -> None:
    """After the provider rotates its signing key, a token naming the new key makes the
    verifier fetch the key set again (at most once a minute by default), so rotation at
    the provider needs nothing here."""
    async with running_cis2() as cis2:
        issuers = Cis2Issuers([cis2.issuer], refetch_seconds=0)
        patient = Cis2Issuers([cis2.issuer])
        try:
            await issuers.verify(cis2.id_token(cis2.nurse(audience=AUD)), audience=AUD)
            await patient.verify(cis2.id_token(cis2.nurse(audience=AUD)), audience=AUD)
            cis2.rotate_key()
            rotated = cis2.id_token(cis2.nurse(audience=AUD))
            assert (await issuers.verify(rotated, audience=AUD))["sub"] == "555000000777"
            fetched = len(cis2.requests)
            # Within the minute an unknown key id is refused without asking again.
            with pytest.raises(InvalidGrant):
                await patient.verify(rotated, audience=AUD)
            assert len(cis2.requests) == fetched
        finally:
            await issuers.close()
            await patient.close()


async def test_a_provider_that_cannot_be_read_is_unavailable_not_a_refusal() -> None:
    """A provider that is down, or whose discovery names another issuer, makes the verifier
    raise Unavailable (try again later), never InvalidGrant."""
    async with running_cis2() as cis2:
        token = cis2.id_token(cis2.nurse(audience=AUD))
        cis2.down = True
        issuers = Cis2Issuers([cis2.issuer])
        try:
            with pytest.raises(Unavailable):
                await issuers.verify(token, audience=AUD)
        finally:
            await issuers.close()
        cis2.down = False
        cis2.signer.issuer = "https://elsewhere.example.invalid"
        issuers = Cis2Issuers([cis2.issuer])
        try:
            with pytest.raises(Unavailable):
                await issuers.verify(token, audience=AUD)
        finally:
            await issuers.close()


def test_claims_as_cis2_returns_them_make_the_viewer() -> None:
    """The role's R-code and the last part of its name, the organisation of the selected
    role, the organisation's name from nhsid_user_orgs, and given plus family name when
    there is no name."""
    claims = {
        "sub": "555000000777",
        "given_name": "Robin",
        "family_name": "Cardholder",
        "selected_roleid": "2",
        "nhsid_nrbac_roles": [
            {"person_roleid": "1", "org_code": "XAA01", "role_code": "S1:G1:R8000"},
            {
                "person_roleid": "2",
                "org_code": "xed01",
                "role_code": "S8000:G8000:R8001",
                "role_name": '"Clinical":"Clinical Provision":"Nurse Access Role"',
            },
        ],
        "nhsid_user_orgs": [{"org_code": "XED01", "org_name": "Trust ED"}],
    }
    viewer = viewer_from_claims(claims, client_ods=("XED01", "XAA01"))
    assert (viewer.user_id, viewer.name, viewer.org_ods, viewer.org_name) == (
        "555000000777",
        "Robin Cardholder",
        "XED01",
        "Trust ED",
    )
    assert (viewer.role_profile_id, viewer.role_code, viewer.role_name) == (
        "2",
        "R8001",
        "Nurse Access Role",
    )
