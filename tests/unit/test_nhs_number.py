"""NHS number rules (SPEC §2), table-driven, cross-checked against the nhs-number package."""

from __future__ import annotations

import nhs_number as reference
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpis.matching import nhs_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9434765919", "9434765919"),  # the NHS's published example
        ("943 476 5919", "9434765919"),  # spaces, as printed on letters
        ("943-476-5919", "9434765919"),
        (" 9434765919 ", "9434765919"),
        ("9990000018", "9990000018"),  # synthetic range
        ("4010232137", "4010232137"),
    ],
)
def test_valid_numbers_are_normalised(raw: str, expected: str) -> None:
    """Valid numbers come back as ten plain digits whatever the spacing."""
    assert nhs_number.check(raw).value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("9434765918", "check digit is wrong"),
        ("943476591", "must be 10 digits"),
        ("94347659190", "must be 10 digits"),
        ("94347659l9", "must be 10 digits"),
        ("", "must be 10 digits"),
        ("0000000000", "all digits are the same"),
        ("1111111111", "all digits are the same"),
        ("٩٤٣٤٧٦٥٩١٩", "must be 10 digits"),  # Arabic-Indic digits are not ASCII digits
        ("9990000010", "check digit is wrong"),
        ("1000000010", "check digit is wrong"),  # 11 - (sum mod 11) == 10: never issued
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(raw: str, reason: str) -> None:
    """Each refusal says why, and never repeats the number itself."""
    result = nhs_number.check(raw)
    assert not result.valid
    assert result.reason == reason
    assert raw.strip() == "" or raw not in (result.reason or "")


def test_check_digit_eleven_means_zero() -> None:
    """A remainder of 0 gives 11 - 0 = 11, which is written as check digit 0."""
    # 9990000026: weights over 999000002 -> sum 10*9+9*9+8*9+2*2 = 247, 247 % 11 = 5 -> 6
    nine = next(f"{n:09d}" for n in range(100000000, 100001000) if _sum(f"{n:09d}") % 11 == 0)
    assert nhs_number.check_digit(nine) == 0


def _sum(nine: str) -> int:
    return sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_agrees_with_the_reference_package(candidate: str) -> None:
    """Our Modulus 11 check agrees with NHS Digital's nhs-number package, except
    that we also refuse ten identical digits (never issued). (The package's
    is_valid also checks Scottish CHI dates, which are not ours to judge.)"""
    ours = nhs_number.check(candidate).valid
    theirs = reference.calculate_checksum(candidate[:9]) == int(candidate[9])
    if len(set(candidate)) == 1:
        assert not ours
    else:
        assert ours == theirs


def test_non_string_input_is_refused() -> None:
    """A JSON number or null never crashes the check."""
    assert not nhs_number.check(9434765919).valid  # type: ignore[arg-type]
    assert not nhs_number.check(None).valid  # type: ignore[arg-type]


def test_synthetic_range() -> None:
    """999-range numbers are synthetic (test data only)."""
    assert nhs_number.is_synthetic("9990000018")
    assert not nhs_number.is_synthetic("9434765919")
