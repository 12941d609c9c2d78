"""The shapes of ODS codes (issue 9, item 14).

Every organisation here is named by its NHS Organisation Data Service code
(system ``https://fhir.nhs.uk/Id/ods-organization-code``). Codes are checked
for shape where an operator types them, so that a slip (``--ods bad``) is
refused instead of becoming an LA nobody can upload for or a setting no
lookup will name. Whether the code exists is ODS's to say, not ours: this
service has no copy of ODS.

Local authorities (ODS primary role RO141, "Local Authority"):

- three digits (``503``): the codes ODS has long given councils with social
  services responsibilities (the CASSR codes);
- four or five letters and digits, with at least one of each: the codes ODS
  has issued since (five-character ``ANANA`` codes since 2021) and LA sites
  (``000AA``). The demo's and tests' synthetic LAs (``XDM01``, ``XLA01``)
  have this shape; ODS gives ``X`` codes to other statutory authorities and
  government departments, never to an LA, so they cannot be a real LA's.

Health organisations (the settings whose users look children up):

- three letters or digits: an organisation (an NHS trust ``RRK``, an
  independent provider ``NT4``, a sub-ICB location ``00Q``);
- five letters or digits: one of its sites (``RRK02``, ``NT401``,
  ``XED01``);
- a letter and five digits: a GP practice or a service coded like one, as
  many out-of-hours, walk-in and 111 services are (``A81001``, ``Y02483``).
"""

from __future__ import annotations

import re

from cpis.errors import OdsCodeError

_LA = re.compile(r"\d{3}|(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*\d)[A-Z0-9]{4,5}")
_HEALTH = re.compile(r"[A-Z0-9]{3}|[A-Z0-9]{5}|[A-Z]\d{5}")

LA_SHAPES = "three digits, or 4-5 letters and digits with at least one of each"
HEALTH_SHAPES = "3 or 5 letters and digits, or a letter and five digits"


def _normal(raw: str) -> str:
    return raw.strip().upper()


def la_code(raw: str) -> str:
    """A local authority's ODS code, upper-cased, or :class:`OdsCodeError`."""
    code = _normal(raw)
    if not (code.isascii() and _LA.fullmatch(code)):
        raise OdsCodeError(f"not a local authority ODS code ({LA_SHAPES})")
    return code


def health_code(raw: str) -> str:
    """A health organisation's ODS code, upper-cased, or :class:`OdsCodeError`."""
    code = _normal(raw)
    if not (code.isascii() and _HEALTH.fullmatch(code)):
        raise OdsCodeError(f"not a health organisation ODS code ({HEALTH_SHAPES})")
    return code


def any_code(raw: str) -> str:
    """An ODS code of either kind (an admin client may act for both)."""
    try:
        return la_code(raw)
    except OdsCodeError:
        pass
    try:
        return health_code(raw)
    except OdsCodeError:
        raise OdsCodeError(
            f"not an ODS code (a local authority's: {LA_SHAPES};"
            f" a health organisation's: {HEALTH_SHAPES})"
        ) from None
