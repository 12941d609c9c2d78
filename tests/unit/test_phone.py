"""UK phone numbers for LAs (issue 9, item 14): checked, and kept in one national format."""

from __future__ import annotations

import pytest

from cpis.errors import PhoneNumberError
from cpis.phone import is_drama, uk_phone


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("01632 960000", "01632 960000"),  # Ofcom drama: the demo's office number
        ("01632960999", "01632 960999"),
        ("+44 1632 960001", "01632 960001"),
        ("07700 900123", "07700 900123"),  # drama mobile, which the library calls invalid
        ("0115 496 0123", "0115 496 0123"),  # drama, also unallocated to the library
        ("020 7946 0500", "020 7946 0500"),
        ("(020) 7946-0500", "020 7946 0500"),
        ("0044 20 7946 0500", "020 7946 0500"),
        ("0113 496 0000", "0113 496 0000"),
        ("0300 123 4567", "0300 123 4567"),  # 03: what many councils' lines are
        ("0800 123 4567", "0800 123 4567"),
        ("0845 123 4567", "0845 123 4567"),  # a service number some councils still use
    ],
)
def test_uk_numbers_are_stored_in_the_national_format(raw: str, stored: str) -> None:
    """Whatever spacing or +44 a number is typed with, it is kept as ``uk_phone`` writes
    it, so the CareTeam a clinician reads shows every LA's numbers alike."""
    assert uk_phone(raw) == stored


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("1", "not a phone number"),
        ("2", "not a phone number"),
        ("", "no number given"),
        ("abc", "not a phone number"),
        ("999", "not a valid UK number"),
        ("01632 96000", "not a valid UK number"),  # a digit short
        ("0161 496 00000", "not a valid UK number"),  # a digit over
        ("+33 1 23 45 67 89", "not a UK number"),
        ("0909 879 0000", "not a number for people to ring"),  # premium rate, even drama
        ("070 1234 5678", "not a number for people to ring"),  # personal number
        ("076 2345 6789", "not a number for people to ring"),  # pager
        ("020 7946 0500 ext 12", "extension"),
    ],
)
def test_numbers_a_clinician_cannot_ring_are_refused(raw: str, why: str) -> None:
    """The probe's ``--office-phone 1 --edt-phone 2``, and every other way a number can
    fail to reach the LA, are refused with a reason that does not repeat the number."""
    with pytest.raises(PhoneNumberError) as caught:
        uk_phone(raw)
    assert why in str(caught.value)
    assert raw.strip() == "" or raw not in str(caught.value)


def test_drama_numbers_are_known_as_such() -> None:
    """So that `cpis la add` can say a drama number rings nobody."""
    assert is_drama("01632 960000") and is_drama("020 7946 0999")
    assert not is_drama("020 7946 1000") and not is_drama("0300 123 4567")
