"""UK phone numbers for the numbers ED clinicians ring (issue 9, item 14).

An LA's office-hours and emergency duty team (EDT) numbers are shown to a
clinician who has a child in front of them and must ring someone now, so
they are checked where they enter (``cpis la add``/``update``, the demo's
seed, :meth:`cpis.adapters.postgres.PgDatabase.upsert_la`) and kept in one
form: the national format (``020 7946 0500``, ``01632 960000``) as Google's
libphonenumber (the ``phonenumbers`` package) writes it, whatever spacing or
``+44`` they were typed with.

What is accepted:

- a UK (GB) number the library says is valid, of a type a hospital phone can
  ring and a person answers: geographic, mobile, freephone, 03 (UAN), VoIP,
  and 084/087 service numbers that some councils still use;
- not 09 premium rate, 070 personal numbers (redirected anywhere, a fraud
  route), 076 pagers or voicemail, not an extension (a clinician in an
  emergency dials one number), and not a number abroad;
- the ranges Ofcom keeps for TV and radio drama, which ring nobody: the demo
  and the tests use them (01632 960xxx above all), and the library calls
  some of them invalid because they are never allocated. ``cpis la add``
  says so when a number is one of them.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from cpis.errors import PhoneNumberError

REGION = "GB"

# Ofcom, "Telephone numbers for use in TV and radio drama programmes": national
# significant numbers (no leading 0) as prefix, and how many numbers follow.
_DRAMA_PREFIXES = (
    *(f"{area}4960" for area in ("113", "114", "115", "116", "117", "118")),
    *(f"{area}4960" for area in ("121", "131", "141", "151", "161")),
    "2079460",
    "1914980",
    "2896496",
    "2920180",
    "1632960",
    "7700900",
    "8081570",
    "9098790",
    "3069990",
)

_RINGABLE = {
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.UAN,
    PhoneNumberType.VOIP,
    PhoneNumberType.SHARED_COST,
}


def _national_digits(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.national_significant_number(number)


def is_drama(national: str) -> bool:
    """Whether a number (as :func:`uk_phone` returns it) is in an Ofcom drama range."""
    digits = "".join(ch for ch in national if ch.isdigit()).removeprefix("0")
    return len(digits) in (9, 10) and digits.startswith(_DRAMA_PREFIXES)


def uk_phone(raw: str) -> str:
    """``raw`` in the national format, or :class:`PhoneNumberError`."""
    text = raw.strip()
    if not text:
        raise PhoneNumberError("no number given")
    try:
        number = phonenumbers.parse(text, REGION)
    except phonenumbers.NumberParseException:
        raise PhoneNumberError("not a phone number") from None
    if number.extension:
        raise PhoneNumberError("an extension cannot be rung directly: give a direct number")
    if number.country_code != phonenumbers.country_code_for_region(REGION):
        raise PhoneNumberError("not a UK number")
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    digits = _national_digits(number)
    if is_drama(national) and len(digits) == 10 and not digits.startswith("909"):
        return national
    if not phonenumbers.is_valid_number_for_region(number, REGION):
        raise PhoneNumberError("not a valid UK number (wrong length, or a range never allocated)")
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.PREMIUM_RATE and digits.startswith(("84", "87")):
        return national  # 084/087 service numbers: still used by some councils
    if kind not in _RINGABLE:
        raise PhoneNumberError(
            "not a number for people to ring (premium rate, personal number, pager or voicemail)"
        )
    return national
