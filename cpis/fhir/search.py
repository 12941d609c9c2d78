"""Search parameters for the three health-facing searches (SPEC §4).

Why so strict: every search is scoped by the subject's NHS number. A server
that silently ignored a parameter it did not understand could answer a
misspelt ``patient:identifer`` with everybody's plans, so unknown and repeated
parameters are refused with 400 INVALID_SEARCH_DATA.

Decisions:

- The NHS number comes from one of the two forms NHS England publishes: the
  consumer guide's ``patient:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}``
  and the producer CapabilityStatement's ``patient`` parameter (declared there
  as a token) given the same ``system|value``. Exactly one of them, once;
  ``subject:identifier``, ``identifier`` and other spellings are refused (even
  with lenient handling).
- The value must be ``https://fhir.nhs.uk/Id/nhs-number|{nhs}`` with exactly
  that system; a bare number, another system, a reference such as
  ``Patient/{nhs}`` or a comma-separated list is refused. Spaces and hyphens
  inside the number are allowed.
- ``_format`` is accepted by name on every search (its value is checked by the
  content negotiation in the web layer).
- Flag also takes ``status`` (one of active, inactive, entered-in-error; see
  :meth:`SearchRequest.wants`) and ``_include=Flag:author``.
- AuditEvent takes ``_include`` to have each viewer's PractitionerRole in the
  bundle: the consumer guide's own value
  ``AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED``
  (not FHIR include syntax, but what NHS's guide tells ED systems to send),
  or FHIR's ``AuditEvent:agent`` and ``AuditEvent:agent:PractitionerRole``.
- ``_count`` and other result-shaping parameters are refused: a page of one of
  a child's several plans would hide an LA, and the result sets are small.
- ``Prefer: handling=lenient`` (``lenient=True``) ignores unknown parameter
  names and unsupported ``_include`` values, which can only ever add to or
  leave unchanged what is returned. It never relaxes anything about the NHS
  number: names resembling it (``patient…``, ``subject…``, ``identifier…``)
  are refused, and a repeated or malformed subject parameter always is.
  Repeated or malformed values of known parameters are refused in both modes.

Error messages name the parameter but never echo a value: values (and names
that do not look like parameter names) may be NHS numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cpis.errors import InvalidSearch, NotFound
from cpis.matching import nhs_number

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
PATIENT_PARAM = "patient:identifier"
PATIENT_SHORT_PARAM = "patient"
SUBJECT_PARAMS = (PATIENT_PARAM, PATIENT_SHORT_PARAM)
FORMAT_PARAM = "_format"
INCLUDE_PARAM = "_include"
STATUS_PARAM = "status"
FLAG_AUTHOR_INCLUDE = "Flag:author"
FLAG_STATUSES = ("active", "inactive", "entered-in-error")
# The consumer guide's value first: the one NHS England tells ED systems to send.
AUDIT_VIEWER_INCLUDES = (
    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED",
    "AuditEvent:agent",
    "AuditEvent:agent:PractitionerRole",
)

_SAFETY_BASES = frozenset({"patient", "subject", "identifier"})
_PARAMS: dict[str, frozenset[str]] = {
    "CareTeam": frozenset({*SUBJECT_PARAMS, FORMAT_PARAM}),
    "Flag": frozenset({*SUBJECT_PARAMS, FORMAT_PARAM, STATUS_PARAM, INCLUDE_PARAM}),
    "AuditEvent": frozenset({*SUBJECT_PARAMS, FORMAT_PARAM, INCLUDE_PARAM}),
}
SEARCHABLE_TYPES = frozenset(_PARAMS)

# Parameter names we are willing to repeat back in a message: identifier-like,
# short, and without a run of digits (which could be part of an NHS number).
_ECHOABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")
_DIGIT_RUN = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A validated search: whose records, and how to filter and include.

    ``status`` filters Flags: ``active`` keeps plans in force today,
    ``inactive`` keeps ended plans still inside their visibility window, and
    ``entered-in-error`` matches nothing (plans sent in error are deleted at
    once, never kept with that status). ``None`` keeps every visible plan.
    """

    resource_type: str
    nhs_number: str
    status: str | None = None
    include_author: bool = False
    include_viewers: bool = False

    def wants(self, *, active: bool) -> bool:
        """Whether a visible plan with this activeness passes the ``status`` filter."""
        if self.status is None:
            return True
        if self.status == "active":
            return active
        if self.status == "inactive":
            return not active
        return False


def parse_search(
    resource_type: str, query: Sequence[tuple[str, str]], *, lenient: bool
) -> SearchRequest:
    """Validate the query items (in order, repeats kept) of a search on ``resource_type``.

    Raises :class:`InvalidSearch` for any fault and :class:`NotFound` for a
    type that cannot be searched here.
    """
    allowed = _PARAMS.get(resource_type)
    if allowed is None:
        raise NotFound("This resource type cannot be searched")

    seen: dict[str, str] = {}
    for name, value in query:
        if name in allowed:
            if name in seen:
                raise InvalidSearch(
                    f"Search parameter '{name}' is given more than once; give it once"
                )
            seen[name] = value
        elif not lenient or _looks_like_subject(name):
            raise InvalidSearch(_unknown_message(name, resource_type))

    given = [name for name in SUBJECT_PARAMS if name in seen]
    if not given:
        raise InvalidSearch(
            f"Missing required search parameter '{PATIENT_PARAM}'; give "
            f"{PATIENT_PARAM}={NHS_NUMBER_SYSTEM}|{{NHS number}}"
        )
    if len(given) > 1:
        raise InvalidSearch(
            f"Give the NHS number once, as '{PATIENT_PARAM}' or '{PATIENT_SHORT_PARAM}', not both"
        )
    number = _nhs_number(given[0], seen[given[0]])

    status = seen.get(STATUS_PARAM)
    if status is not None and status not in FLAG_STATUSES:
        raise InvalidSearch(
            f"Search parameter '{STATUS_PARAM}' must be one of {', '.join(FLAG_STATUSES)}"
        )

    include_author = include_viewers = False
    include = seen.get(INCLUDE_PARAM)
    if include is not None:
        if resource_type == "Flag" and include == FLAG_AUTHOR_INCLUDE:
            include_author = True
        elif resource_type == "AuditEvent" and include in AUDIT_VIEWER_INCLUDES:
            include_viewers = True
        elif not lenient:
            supported = (
                FLAG_AUTHOR_INCLUDE if resource_type == "Flag" else ", ".join(AUDIT_VIEWER_INCLUDES)
            )
            raise InvalidSearch(
                f"Unsupported value for '{INCLUDE_PARAM}' on {resource_type}; "
                f"supported: {supported}"
            )

    return SearchRequest(resource_type, number, status, include_author, include_viewers)


def _nhs_number(name: str, raw: str) -> str:
    system, bar, value = raw.partition("|")
    if not bar or system != NHS_NUMBER_SYSTEM:
        raise InvalidSearch(f"Search parameter '{name}' must be {NHS_NUMBER_SYSTEM}|{{NHS number}}")
    if "," in value:
        raise InvalidSearch(f"Search parameter '{name}' must name exactly one NHS number")
    checked = nhs_number.check(value)
    if checked.value is None:
        raise InvalidSearch(f"Invalid NHS number in '{name}': {checked.reason}")
    return checked.value


def _looks_like_subject(name: str) -> bool:
    """Names a client may have meant as the subject: never ignored, even leniently."""
    base = re.split(r"[:.]", name.strip(), maxsplit=1)[0].lower()
    return base in _SAFETY_BASES or base.startswith(("patient", "subject"))


def echoable_name(name: str) -> str | None:
    """``name`` if a message may repeat it, else None.

    A parameter's name is whatever the caller put before ``=``, an NHS number
    included: only one shaped like a parameter name (letters, digits, ``_ . : -``,
    at most 64) with no run of three digits is named back.
    """
    return name if _ECHOABLE_NAME.fullmatch(name) and not _DIGIT_RUN.search(name) else None


def _unknown_message(name: str, resource_type: str) -> str:
    if echoable_name(name) is not None:
        return f"Unknown search parameter '{name}' for {resource_type}"
    return f"Unknown search parameter for {resource_type}"
