"""Deciding which NHS number, if any, an LA's child has, from candidates the index found.

``cpis trace`` asks the person index for people who plausibly match a child
the LA has no NHS number for (blocking only), then this module decides, with
:func:`cpis.matching.demographics.compare` against each candidate:

certain
    the best candidate's evidence weight (``MatchResult.weight``) is at least
    ``CERTAIN_WEIGHT`` and ``CERTAIN_MARGIN`` ahead of every other candidate's;
    nothing about it contradicts the child (``MatchResult.contradicted``); its
    given name agrees strongly or is missing (not a shared word or an
    initial, nor one vowel changed: Isabella/Isabelle); its birth date is not
    merely one digit out unless the postcode agrees; a postcode given on both
    sides agrees; and any other
    candidate sharing its birth date and surname (issue 11: a twin) is told
    apart by the given name: exactly the candidate's, a different name from
    the twin's. The LA can send that number without a person checking.
possible
    anything else where some person compares "match" or "possible": a person
    must look. The best candidate's number is proposed with its score and
    reasons; ``several-candidates`` says there were others.
none
    no candidate compares better than "no-match".

Why that is safe: the danger is not the candidates the index finds but the
ones it does not. A child who is in the index is found by blocking (birth
date, surname + year, surname + given name, one keystroke either way when
there is no birth date) and compares at least as well as anyone else, so a
second plausible person (a twin when the given name is missing, a namesake
born the same day) removes the margin and the outcome is ``possible``. What
is left is a child the index does not hold and a single stranger who happens
to agree: ``CERTAIN_WEIGHT`` (6) is more than a given name and a birth date
(5), which a namesake in another family can have, so a changed surname, a
missing birth date or a missing given name is certain only with a further
agreeing part (for a changed surname, the postcode); the given-name and
one-digit exclusions cover the rest (twins share a middle name; a common name
one digit of the date away is as likely a namesake). This replaced "a match
on every part" (birth date exact or transposed, both names), which left a
changed surname, a missing birth date or given name, and a year out always
``possible``; ``bench/matching`` measures both (bench/README.md).

Twins and postcodes (issue 11). A child the index does not hold was traced as
certain to his twin, who has a look-alike name; a year slip that landed on a
namesake's birth date was traced as certain though the postcode disagreed.
So a candidate whose birth date and surname another candidate shares (a twin,
or triplets) is at best ``possible`` unless the LA's given name is exactly the
candidate's and plainly not the twin's (Oliver, not Olivia), a given name
that differs from the candidate's only by one vowel (how look-alike twin
names differ) is never certain, and neither is a candidate whose postcode
differs from the one the LA gave. Children in care do move, so the last
costs some certain proposals when the LA's postcode is old: a person looks.

Superseded numbers (merged records) are followed to the number that replaced
them, so the LA is never told to send a retired number; the old and new
records of one person count as one person. A number retired with no
replacement is never proposed.

Sensitive records: the index hides their details from anyone who does not
need them, and CP-IS does not hold plans for them (CPR02). They are still
compared, because leaving them out could make a different child look like
the only match. When a sensitive record compares "match" or "possible" the
outcome is ``possible`` with no number, no score, and the single reason
``sensitive-record``: the LA learns that a person must look, and nothing of
the record's demographics, number, or which parts agreed.

Pure: no I/O; reasons are codes, never names, dates or numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cpis.matching import names
from cpis.matching.demographics import MatchResult, Person, compare
from cpis.model.persons import IndexPerson

TraceStatus = Literal["certain", "possible", "none"]

MAX_SUPERSEDED_HOPS = 5
"""How many merges to follow; a longer chain (or a loop) is treated as unresolved."""

CERTAIN_WEIGHT = 6.0
"""The evidence weight (``MatchResult.weight``) the best candidate needs on its
own: more than a given name and a birth date that agree (5), which a namesake
in another family has, so a child the index does not hold is not pinned on
its namesake; a surname, a postcode, or a second agreeing part must add to it."""

CERTAIN_MARGIN = 3.0
"""How much more evidence weight the best candidate needs than every other:
a birth date's worth. A namesake born the same day, a twin when the given
name is missing, or the same name one digit of the date away, leaves the best
short of it."""

_RANK = {"match": 2, "possible": 1, "no-match": 0}

_CERTAIN_GIVEN = frozenset({"exact", "first-token", "nickname", "typo", "missing"})
"""Given-name grades a certain proposal may rest on. Not "partial" (one shared
word) or "initial": twins often share a middle name or an initial, and a twin
agrees on everything else. Nor a birth date one digit out: some 25 dates are
one digit from any date, so a common name one digit of the date away is as
likely a namesake (the child may not be in the index at all), unless the
postcode agrees too (issue 11: day and year digit slips). Initials and a
middle name used as the known-as name stay "possible" however much else
agrees: an absent twin shares initials and often the middle name, and an
absent twin's name may be a nickname of the other's middle name (Harry, for
Harvey Henry), which bench/matching's stress run found."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One person the LA's child was compared with.

    ``nhs_number`` is the number to propose: the candidate's own, or the one
    that superseded it (``superseded`` is then True).
    """

    nhs_number: str
    result: MatchResult
    sensitive: bool = False
    superseded: bool = False


@dataclass(frozen=True, slots=True)
class TraceDecision:
    """The outcome for one child: status, proposed number, score and reasons.

    ``nhs_number`` and ``score`` are None for ``none`` and for a sensitive
    ``possible``. ``candidates`` holds every non-sensitive person that
    compared "match" or "possible", best first, for a caller that wants more
    than the best one.
    """

    status: TraceStatus
    nhs_number: str | None
    score: float | None
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...] = ()


def as_person(record: IndexPerson) -> Person:
    """The index's record in the shape ``compare`` takes."""
    return Person(
        given_name=record.given_names or "",
        family_name=record.family_name or "",
        birth_date=record.birth_date,
        sex=record.sex,
        postcode=record.postcode,
    )


def resolve(record: IndexPerson, known: Mapping[str, IndexPerson]) -> IndexPerson | None:
    """The record that now stands for ``record``'s person, following merges through
    ``known``; None when the number is retired with no replacement, or the chain
    is too long or loops.

    A replacement number the index did not return is still the right number to
    propose: it stands as a bare record (no demographics) carrying ``record``'s
    sensitivity.
    """
    current = record
    seen = {record.nhs_number}
    for _ in range(MAX_SUPERSEDED_HOPS):
        successor = current.superseded_by
        if successor is None:
            return current if current.active else None
        if successor in seen:
            return None
        seen.add(successor)
        nxt = known.get(successor)
        if nxt is None:
            return IndexPerson(nhs_number=successor, sensitive=current.sensitive)
        current = nxt
    return None


def decide(
    la: Person,
    candidates: Iterable[IndexPerson],
    *,
    successors: Mapping[str, IndexPerson] | None = None,
) -> TraceDecision:
    """Decide for one child; ``successors`` are index records for superseding numbers
    (the caller fetches them so that this stays pure)."""
    pool = list(candidates)
    known = {c.nhs_number: c for c in pool} | dict(successors or {})
    best: dict[str, Candidate] = {}
    compared: dict[str, IndexPerson] = {}
    for record in pool:
        current = resolve(record, known)
        if current is None:
            continue
        result = compare(la, as_person(record))
        candidate = Candidate(
            nhs_number=current.nhs_number,
            result=result,
            sensitive=record.sensitive or current.sensitive,
            superseded=current.nhs_number != record.nhs_number,
        )
        # The old and new records of one merged person are one person: keep the
        # better comparison, and sensitive if either record is.
        held = best.get(current.nhs_number)
        if held is not None:
            keep = candidate if _key(candidate) > _key(held) else held
            if (held.sensitive or candidate.sensitive) and not keep.sensitive:
                keep = Candidate(keep.nhs_number, keep.result, True, keep.superseded)
            candidate = keep
        if best.get(current.nhs_number) is not candidate:
            compared[current.nhs_number] = record
        best[current.nhs_number] = candidate

    plausible = sorted(
        (c for c in best.values() if c.result.decision != "no-match"), key=_key, reverse=True
    )
    if any(c.sensitive for c in plausible):
        return TraceDecision("possible", None, None, ("sensitive-record",))
    if not plausible:
        reason = "no-close-candidate" if best else "no-candidate"
        return TraceDecision("none", None, None, (reason,))
    top = plausible[0]
    reasons = list(top.result.reasons)
    if top.superseded:
        reasons.append("superseded-number-followed")
    twins = _twins(compared[top.nhs_number], [compared[n] for n in best if n != top.nhs_number])
    # Twins the LA's given name tells apart (exactly the candidate's, and a
    # different name from each twin's) leave the candidate certain; anything
    # less and a person must look.
    told_apart = top.result.given_level in {"exact", "first-token"} and all(
        best[n].result.given_level == "mismatch" for n in twins
    )
    twin = bool(twins) and not told_apart
    if twin:
        reasons.append("twin-in-index")
    if not twin and is_certain(top.result, (c.result for c in best.values() if c is not top)):
        return TraceDecision(
            "certain", top.nhs_number, top.result.score, tuple(reasons), tuple(plausible)
        )
    if len(plausible) > 1:
        reasons.append("several-candidates")
    return TraceDecision(
        "possible", top.nhs_number, top.result.score, tuple(reasons), tuple(plausible)
    )


def is_certain(best: MatchResult, others: Iterable[MatchResult]) -> bool:
    """Whether ``best`` is enough on its own and far enough ahead of ``others``."""
    if best.decision == "no-match" or best.contradicted or best.weight < CERTAIN_WEIGHT:
        return False
    # A birth date one digit out is certain only where the postcode agrees as
    # well: a namesake one digit of the date away rarely shares it.
    if best.given_level not in _CERTAIN_GIVEN:
        return False
    if best.birth_level == "one-digit" and best.postcode_level != "exact":
        return False
    if best.given_vowel_swap or best.postcode_level in {"different", "district"}:
        return False
    return all(best.weight - other.weight >= CERTAIN_MARGIN for other in others)


def _twins(record: IndexPerson, others: Iterable[IndexPerson]) -> list[str]:
    """The numbers of the people in ``others`` who share ``record``'s birth date and
    a surname word: its twins (or namesakes born the same day) in the index."""
    if record.birth_date is None:
        return []
    surnames = names.significant(names.tokens(record.family_name or ""))
    return [
        other.nhs_number
        for other in others
        if other.birth_date == record.birth_date
        and surnames & names.significant(names.tokens(other.family_name or ""))
    ]


def _key(candidate: Candidate) -> tuple[int, float, str]:
    # The number breaks ties so that the outcome never depends on the index's order.
    result = candidate.result
    return (_RANK[result.decision], result.score, candidate.nhs_number)
