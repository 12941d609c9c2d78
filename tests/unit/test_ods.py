"""The shapes of ODS codes (issue 9, item 14)."""

from __future__ import annotations

import pytest

from cpis.errors import OdsCodeError
from cpis.ods import any_code, health_code, la_code


@pytest.mark.parametrize("raw", ["503", "102", "a4c7e", "XDM01", "xla01", " 000AA ", "E2K5"])
def test_local_authority_codes_of_every_shape_ods_issues(raw: str) -> None:
    """Three digits, and the four- and five-character codes of newer LAs and LA sites;
    the demo's and tests' synthetic X codes too. Upper-cased, trimmed."""
    assert la_code(raw) == raw.strip().upper()


@pytest.mark.parametrize(
    "raw", ["bad", "BAD", "1", "12", "1234", "ABCDE", "XLA0001", "50 3", "5Ö3"]
)
def test_what_no_local_authority_is_coded_as_is_refused(raw: str) -> None:
    """The probe's ``--ods bad`` among them."""
    with pytest.raises(OdsCodeError, match="not a local authority ODS code"):
        la_code(raw)


@pytest.mark.parametrize("raw", ["RRK", "00Q", "rrk02", "NT401", "XED01", "A81001", "Y02483"])
def test_health_organisation_codes(raw: str) -> None:
    """Organisations, their sites, and practice-style codes."""
    assert health_code(raw) == raw.upper()


@pytest.mark.parametrize("raw", ["R", "RR", "RRKK", "RRK0201", "A810010", "AB1234", "RR-01"])
def test_what_no_health_organisation_is_coded_as_is_refused(raw: str) -> None:
    with pytest.raises(OdsCodeError, match="not a health organisation ODS code"):
        health_code(raw)


def test_an_admin_client_may_name_either_kind() -> None:
    assert any_code("503") == "503" and any_code("rrk") == "RRK"
    with pytest.raises(OdsCodeError, match="not an ODS code"):
        any_code("R-1")
