"""What the web pages decide without a database or a provider (issue 12): the role a
person's verified claims give them, which number to ring by the time in England,
when cookies are Secure, the CSRF token, and where a sign-in may return to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cpis import rules
from cpis.adapters.oidc_login import person_from_claims
from cpis.errors import SignInFailed
from cpis.model.web import OrgKind, SignInConfig, WebRole
from cpis.services.web_sign_in import csrf_ok, csrf_token, key_of
from cpis.web.pages._site import cookie_names, secure_cookies
from cpis.web.pages.sign_in import safe_return_path

LA = SignInConfig(
    org_ods="XDM01",
    kind=OrgKind.LA,
    issuer="https://login.example/tenant/v2.0",
    client_id="cpis",
    role_values={"caseworker": WebRole.CASEWORKER, "Team.Manager": WebRole.MANAGER},
)
ED = SignInConfig(
    org_ods="XED01",
    kind=OrgKind.HEALTH,
    issuer="https://cis2.example/realms/Healthcare",
    client_id="cpis",
    roles_claim="selected_roleid",
)


def _cis2(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "555000000101",
        "nhsid_useruid": "555000000101",
        "name": "Casey Demonurse",
        "id_assurance_level": "3",
        "authentication_assurance_level": "3",
        "selected_roleid": "555000000201",
        "nhsid_nrbac_roles": [
            {
                "person_roleid": "555000000201",
                "org_code": "XED01",
                "role_code": "S8000:G8000:R8001",
                "role_name": '"Clinical":"Clinical Provision":"Nurse Access Role"',
            }
        ],
    }
    claims.update(changes)
    return claims


def test_an_la_persons_app_roles_map_to_caseworker_or_manager_the_higher_winning() -> None:
    assert person_from_claims(LA, {"sub": "a", "roles": ["caseworker"]}).role is WebRole.CASEWORKER
    both = person_from_claims(
        LA, {"sub": "a", "name": "Sam", "roles": ["caseworker", "Team.Manager"]}
    )
    assert (both.role, both.name, both.org_ods) == (WebRole.MANAGER, "Sam", "XDM01")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "a"},
        {"sub": "a", "roles": []},
        {"sub": "a", "roles": ["admin"]},
        {"roles": ["caseworker"]},
    ],
)
def test_an_la_person_without_a_mapped_role_or_an_id_is_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(SignInFailed):
        person_from_claims(LA, claims)


def test_a_cis2_clinician_gets_her_selected_role_and_organisation() -> None:
    user = person_from_claims(ED, _cis2())
    assert (user.role, user.user_id, user.org_ods, user.job_role, user.role_code) == (
        WebRole.CLINICIAN,
        "555000000101",
        "XED01",
        "Nurse Access Role",
        "R8001",
    )
    assert user.role_profile_id == "555000000201"


@pytest.mark.parametrize(
    "changes",
    [
        {"id_assurance_level": "2"},
        {"authentication_assurance_level": "1"},
        {"selected_roleid": "999"},  # not one of her roles
        {
            "nhsid_nrbac_roles": [
                {"person_roleid": "555000000201", "org_code": "XOTHER", "role_code": "R8001"}
            ]
        },
    ],
)
def test_a_cis2_sign_in_below_level_3_or_for_another_organisation_is_refused(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(SignInFailed):
        person_from_claims(ED, _cis2(**changes))


def test_a_health_organisation_may_allow_only_some_job_roles() -> None:
    doctors_only = SignInConfig(
        org_ods="XED01",
        kind=OrgKind.HEALTH,
        issuer=ED.issuer,
        client_id="cpis",
        role_values={"R8000": WebRole.CLINICIAN},
    )
    with pytest.raises(SignInFailed):
        person_from_claims(doctors_only, _cis2())


@pytest.mark.parametrize(
    ("at", "office"),
    [
        (datetime(2026, 12, 3, 8, 59, tzinfo=UTC), False),  # Thursday, GMT
        (datetime(2026, 12, 3, 9, 0, tzinfo=UTC), True),
        (datetime(2026, 12, 3, 16, 59, tzinfo=UTC), True),
        (datetime(2026, 12, 3, 17, 0, tzinfo=UTC), False),
        (datetime(2026, 12, 3, 3, 0, tzinfo=UTC), False),  # 3 a.m.
        (datetime(2026, 12, 5, 12, 0, tzinfo=UTC), False),  # Saturday
        (datetime(2026, 6, 4, 8, 30, tzinfo=UTC), True),  # 09:30 BST
        (datetime(2026, 6, 4, 16, 30, tzinfo=UTC), False),  # 17:30 BST
    ],
)
def test_office_hours_are_weekdays_9_to_5_in_england(at: datetime, office: bool) -> None:
    assert rules.in_office_hours(at) is office


def test_cookies_are_secure_except_on_plain_http_on_this_machine() -> None:
    assert not secure_cookies("http://127.0.0.1:8080")
    assert not secure_cookies("http://localhost:8080/cpis")
    assert secure_cookies("https://cpis.example.nhs.uk")
    assert secure_cookies("http://cpis.example")  # Secure: such a service cannot sign in
    assert cookie_names(True)[0].startswith("__Host-")


def test_the_csrf_token_is_the_sessions_own_and_not_its_stored_key() -> None:
    token = csrf_token("session-one")
    assert csrf_ok("session-one", token)
    assert not csrf_ok("session-two", token)
    assert not csrf_ok("session-one", None)
    assert token.encode() not in key_of("session-one")


@pytest.mark.parametrize(
    ("raw", "prefix", "kept"),
    [
        ("/lookup", "", True),
        ("/cpis/lookup", "/cpis", True),
        ("/lookup", "/cpis", False),
        ("//evil.example/", "", False),
        ("/\t/evil.example/", "", False),
        ("/\\evil.example", "", False),
        ("https://evil.example/", "", False),
        ("/ /x", "", False),
        ("", "", False),
    ],
)
def test_a_sign_in_returns_only_to_a_page_of_this_service(
    raw: str, prefix: str, kept: bool
) -> None:
    assert safe_return_path(raw, prefix) == (raw if kept else "")
