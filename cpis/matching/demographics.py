"""Deciding whether an LA's child and the person index's record are the same child.

When an LA sends a plan for an NHS number, its name and date of birth are
compared with what the person index holds for that number (SPEC §3, CPR03
"demographics do not match the NHS number well enough"). A wrong child is worse
than no match: a plan pinned to the wrong NHS number shows a stranger's child
protection alert in an emergency department, and hides the real child's. So the
policy is tuned for precision (target >= 99.9%, measured by ``bench/matching``
on synthetic children and corrupted LA copies; bench/README.md has the figures):
anything short of "match" is at best "possible" for a person to review.

Each part is graded on its own, then a fixed rule decides:

birth date
    exact; day and month transposed (03/04 vs 04/03); year off by one; one digit
    different (in YYYYMMDD); mismatch; missing.
family name
    exact (after normalisation: case, accents, punctuation, Mc/Mac);
    typo (Jaro-Winkler >= ``TYPO_JW``, or one keystroke apart in names of
    ``MIN_EDIT_FAMILY`` letters or more; not a known different surname such as
    Harris/Harrison); partial (one double-barrelled half: Smith-Jones vs Jones);
    similar (JW >= ``SIMILAR_JW``); mismatch; missing.
given name
    exact; first-token (a middle name on one side only); nickname (Tom/Thomas,
    from a small built-in table); typo (JW >= ``TYPO_JW`` or one keystroke
    apart, see ``MIN_EDIT_GIVEN``; three- and four-letter names only by a
    finger's slip, Avs/Ava; not a known pair of different names such as
    Louis/Louise); partial (shares a word, e.g. known by the middle name);
    initial ("J" vs "James"); similar; mismatch; missing.

names the wrong way round
    "Jones Thomas" for "Thomas Jones" (or "Jones, Thomas Rees"): both crossed
    names exact count as both names exact. One of them a slip or a nickname
    away ("Jnoes Thomas", "Jones Tom") counts as a typo in each name and a
    swap, so never "match" on its own but "possible" with weight: the upload
    path may confirm it with the index, tracing may be certain of it.

Each grade carries an evidence weight (``_WEIGHT_*``, roughly log-odds): birth
date exact +3, transposed or a year out +1.5, one digit out +1 (some 25 dates
are one digit from any date), mismatch -3; given name exact +3, first-token or
nickname +2.5, typo +2, different -3; family name exact +2, typo or partial
+1.5, different -1 (siblings share a surname; children's surnames change);
postcode exact +2, same district +0.5, different 0; names swapped -0.5 (-1
with a slip); a stated sex that differs -3.

match
    the given name agrees strongly (exact, first-token, nickname or typo), the
    weight is at least ``MATCH_WEIGHT`` (5), at most ``MAX_FUZZY`` (2) parts
    are imperfect (a typo, a nickname, names the wrong way round, a birth date
    not exact), and: without a birth date, both names exactly as written; never
    when both records state a sex and they differ. So the same child matches
    with one name misspelt and the date transposed, or with a changed surname
    when given name and birth date are exact; twins (who differ only in the
    given name) never do, nor does a child whose given name is missing.
possible
    not a match, but the birth date nearly agrees (any grade except mismatch or
    missing) and at least one name agrees (family exact/typo/partial/similar or
    given exact/first-token/nickname/typo/partial); or both names strongly agree
    whatever the birth date says (a person should look).
no-match
    everything else.

Beyond the decision, a :class:`MatchResult` carries what callers weighing
*several* people need: the ``weight``; ``exact`` (everything as written, so an
upload needs no more checks); ``contradicted`` (a part disagrees outright: a
different given name, a birth date that is no slip of the other, a different
stated sex; a changed surname is not a contradiction, nor is a given name
that is only similar, which the index's rival search must then settle);
and the given-name and birth-date grades. The upload path
(``cpis.services.verification``) confirms a "possible" that is not contradicted when
the index finds nobody else close; tracing (``cpis.matching.trace``) is
certain of a candidate with enough weight, nothing contradicting, and a clear
margin over every other. Both docstrings say why that is safe.

Why ``TYPO_JW`` = 0.92: at that level one-letter slips in names of five or more
letters (Jonathon/Jonathan 0.95, Thompson/Thomson 0.975) pass while common
distinct pairs of short names stay below (Tom/Tim 0.80, Smith/Smyth 0.89). Pairs
of different given names that still score above it (Alexander/Alexandra 0.96,
Louis/Louise 0.97, Christian/Christina 0.98) are caught by an explicit list and
suffix rules in ``names``; surnames extended by two or more letters
(Harris/Harrison 0.95) are never typos. The records being compared are already
tied by an NHS number that passed its check digit, so a different child
agreeing on all of that is far rarer than a misspelling.

Sex and postcode: a stated sex that differs blocks "match". A postcode that
agrees is evidence against a stranger (+2: a namesake born the same day in
another family rarely shares it), never against a sibling, who shares it; a
different postcode does not count against (children in care move, often out of
area). The upload format has no postcode, so it only ever helps tracing, where
the trace file may carry one.

The score summarises the same evidence in [0, 1] for ranking and audit (birth
date 0.4, family name 0.3, given name 0.3, small nudges for sex and postcode),
clamped into its decision's band: match 0.9-1.0, possible 0.5-0.89, no-match
0-0.49. The decision comes from the rules above, never from the score. Reasons are
short codes, never names or dates, so they can be logged and shown to anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from cpis.matching import names

Decision = Literal["match", "possible", "no-match"]

TYPO_JW = 0.92
"""Jaro-Winkler at or above which two names count as the same name mistyped."""

SIMILAR_JW = 0.85
"""Jaro-Winkler at or above which two names are similar: weak evidence only."""

MAX_FUZZY = 2
"""How many imperfect parts (a typo, a nickname, swapped names, a birth date
not exact) a "match" may rest on; three is too easy to find by chance."""

MIN_EDIT_GIVEN = 5
"""Given names at least this long are typos of each other one keystroke apart
(Ethan/Ethsn); four-letter ones one keystroke apart are often different names
(Eric/Erin, Milo/Mila), so there only a finger's slip counts (Ella/Elka,
``names.within_one_edit(slips_only=True)``), and shorter ones never."""

MIN_SLIP_GIVEN = 3
"""Given names shorter than this are never typos of each other (Al/Ali)."""

MIN_EDIT_FAMILY = 4
"""The same for family names, where a one-keystroke neighbour is rarely another
family sharing the child's given name and birth date (Tayler/Taylor)."""

MATCH_WEIGHT = 5.0
"""The evidence weight (see ``_WEIGHT_*``) a "match" needs."""

# Evidence weights, roughly log-odds that the two records are one child: what
# agreement on each part is worth, and what disagreement costs. A family name
# is worth less than a given name (siblings share it) and costs little when it
# differs (children's surnames change); a given name that differs is decisive
# (twins differ only there).
_WEIGHT_BIRTH = {
    "exact": 3.0,
    "day-month-transposed": 1.5,
    "year-off-by-one": 1.5,
    # About 25 dates are one digit away from any date, against one or two
    # transposed or a year out: weaker evidence.
    "one-digit": 1.0,
    "missing": 0.0,
    "mismatch": -3.0,
}
_WEIGHT_GIVEN = {
    "exact": 3.0,
    "first-token": 2.5,
    "nickname": 2.5,
    "typo": 2.0,
    "partial": 1.0,
    "initial": 0.5,
    "missing": 0.0,
    "similar": -1.0,
    "mismatch": -3.0,
}
_WEIGHT_FAMILY = {
    "exact": 2.0,
    "typo": 1.5,
    "partial": 1.5,
    "similar": 0.0,
    "missing": 0.0,
    "mismatch": -1.0,
}

_WEIGHTS = {"birth_date": 0.4, "family": 0.3, "given": 0.3}

_DATE_SCORE = {
    "exact": 1.0,
    "day-month-transposed": 0.85,
    "year-off-by-one": 0.7,
    "one-digit": 0.7,
    "missing": 0.5,  # neither for nor against
    "mismatch": 0.0,
}

_NAME_SCORE = {
    "exact": 1.0,
    "first-token": 0.95,
    "nickname": 0.9,
    "partial": 0.75,
    "initial": 0.6,
    "missing": 0.5,
}

# The score is clamped into its decision's band so that it can be read on its
# own: >= 0.9 is always a match, < 0.5 never more than no-match.
_SCORE_BANDS: dict[str, tuple[float, float]] = {
    "match": (0.9, 1.0),
    "possible": (0.5, 0.89),
    "no-match": (0.0, 0.49),
}

# A stated postcode that agrees is evidence against a stranger (never
# against a sibling, who shares it); one that differs is no evidence against,
# because children on plans move, often out of area.
_WEIGHT_POSTCODE = {"postcode-exact": 2.0, "postcode-district": 0.5}

_CONFLICTING_GIVEN = frozenset({"mismatch"})
_STRONG_FAMILY = frozenset({"exact", "typo"})
_STRONG_GIVEN = frozenset({"exact", "first-token", "nickname", "typo"})
_AGREEING_FAMILY = _STRONG_FAMILY | {"partial"}
_SOME_FAMILY = _AGREEING_FAMILY | {"similar"}
_SOME_GIVEN = _STRONG_GIVEN | {"partial"}
_NEAR_DATES = frozenset({"exact", "day-month-transposed", "year-off-by-one", "one-digit"})

_SEXES = {
    "m": "male",
    "male": "male",
    "1": "male",
    "f": "female",
    "female": "female",
    "2": "female",
}


@dataclass(frozen=True, slots=True)
class Person:
    """The demographics of one child as one side recorded them.

    Names are free text as received; an empty name means "not given".
    ``sex`` accepts "male"/"female", "M"/"F" or the NHS codes "1"/"2"; anything
    else (unknown, not stated, other) is treated as not given.
    """

    given_name: str
    family_name: str
    birth_date: date | None
    sex: str | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The outcome of comparing two people: a decision, a score in [0, 1], reason codes."""

    decision: Decision
    score: float
    reasons: tuple[str, ...]
    weight: float = 0.0
    """The evidence weight (roughly log-odds) behind the decision; uploads and
    tracing compare rival candidates by it."""
    exact: bool = False
    """Birth date and both names exactly as written (a middle name on one side
    only allowed). Uploads apply such a record without asking the index for
    rivals."""
    contradicted: bool = False
    """Some part disagrees outright: a different given name (or a known
    different form of it), a birth date that is not a slip of the other, or a
    stated sex that differs. A different surname is no contradiction
    (children's surnames change), nor is a merely similar given name (two slips
    in one name): uploads may then apply the record only if the index finds
    nobody else close, and tracing is never certain of it. Never "certain" in tracing,
    never confirmed by the index in uploads."""
    given_level: str = ""
    """The given name's grade (exact, first-token, nickname, typo, partial,
    initial, missing, similar, mismatch; a known different form is mismatch)."""
    birth_level: str = ""
    """The birth date's grade (exact, day-month-transposed, year-off-by-one,
    one-digit, missing, mismatch)."""
    family_level: str = ""
    """The family name's grade (exact, typo, partial, similar, missing, mismatch)."""
    postcode_level: str = "missing"
    """exact, district (same outward code), different, or missing (either side)."""
    given_vowel_swap: bool = False
    """The given names differ only in one vowel for another (Isabella/Isabelle,
    Mario/Maria): graded a typo or a nickname, but the way a twin's look-alike name differs
    too, so tracing is never certain on it."""


@dataclass(frozen=True, slots=True)
class _Grade:
    """One name part's grade and its contribution to the score."""

    level: str
    score: float
    reason: str


def compare(la: Person, index: Person) -> MatchResult:
    """Compare an LA's record of a child with the person index's; never raises.

    Symmetric: swapping the arguments gives the same result, so the decision
    does not depend on which side is believed.
    """
    birth = _grade_birth_date(la.birth_date, index.birth_date)
    family = _grade_family(la.family_name, index.family_name)
    given = _grade_given(la.given_name, index.given_name)
    swapped = False
    if not (family.level in _STRONG_FAMILY and given.level in _STRONG_GIVEN):
        # Names the wrong way round: "Thomas Jones" vs "Jones Thomas". Comparing
        # keys, not grades, keeps compare() symmetric. Both crossed names exact
        # count as both names exact; one of them a keystroke out ("Jnoes
        # Thomas") counts as two typos, so the swap plus typos exceed
        # ``MAX_FUZZY`` and it is never a "match" on its own: only
        # "possible", with the weight of two typos (uploads then ask the
        # index for rivals, tracing needs a clear margin; see the module doc).
        sides = (la.given_name, la.family_name, index.given_name, index.family_name)
        crossed = (
            _crossed(la.given_name, index.family_name),
            _crossed(index.given_name, la.family_name),
        )
        if all(map(_not_initial, sides)) and "exact" in crossed and None not in crossed:
            fuzzy_swap = "typo" in crossed
            straight = _WEIGHT_GIVEN[given.level] + _WEIGHT_FAMILY[family.level]
            if not fuzzy_swap:
                family = _Grade("exact", 1.0, "family-name-exact")
                given = _Grade("exact", 1.0, "given-name-exact")
                swapped = True
            elif straight < _WEIGHT_GIVEN["typo"] + _WEIGHT_FAMILY["typo"]:
                family = _Grade("typo", TYPO_JW, "family-name-typo")
                given = _Grade("typo", TYPO_JW, "given-name-typo")
                swapped = True

    sex_la, sex_index = _sex(la.sex), _sex(index.sex)
    sex_known = sex_la is not None and sex_index is not None
    sex_conflict = sex_known and sex_la != sex_index
    postcode = _grade_postcode(la.postcode, index.postcode)
    postcode_level = _postcode_level(la.postcode, index.postcode, postcode)

    fuzzy = (family.level == "typo") + (given.level in {"nickname", "typo"}) + swapped
    names_strong = family.level in _STRONG_FAMILY and given.level in _STRONG_GIVEN
    given_level = "mismatch" if given.reason == "given-name-distinct-variant" else given.level
    weight = (
        _WEIGHT_BIRTH[birth]
        + _WEIGHT_GIVEN[given_level]
        + _WEIGHT_FAMILY[family.level]
        + _WEIGHT_POSTCODE.get(postcode or "", 0.0)
        - (0.0 if not swapped else 0.5 if family.level == "exact" else 1.0)
        - (3.0 if sex_conflict else 0.0)
    )
    contradicted = sex_conflict or birth == "mismatch" or given_level in _CONFLICTING_GIVEN

    decision: Decision
    if (
        not sex_conflict
        and given.level in _STRONG_GIVEN
        and fuzzy + (birth != "exact") <= MAX_FUZZY
        and weight >= MATCH_WEIGHT
        # No birth date only with both names exactly as written.
        and (birth != "missing" or (given.level == "exact" and family.level == "exact"))
    ):
        decision = "match"
    elif (
        birth in _NEAR_DATES and (family.level in _SOME_FAMILY or given.level in _SOME_GIVEN)
    ) or names_strong:
        decision = "possible"
    else:
        decision = "no-match"

    reasons = [family.reason, given.reason]
    if swapped:
        reasons.append("names-swapped")
    reasons.append(f"birth-date-{birth}")
    if sex_known:
        reasons.append("sex-mismatch" if sex_conflict else "sex-match")
    if postcode is not None:
        reasons.append(postcode)

    score = (
        _WEIGHTS["birth_date"] * _DATE_SCORE[birth]
        + _WEIGHTS["family"] * family.score
        + _WEIGHTS["given"] * given.score
    )
    if swapped:
        score -= 0.05
    if sex_known:
        score += -0.15 if sex_conflict else 0.02
    if postcode == "postcode-exact":
        score += 0.03
    elif postcode == "postcode-district":
        score += 0.01
    low, high = _SCORE_BANDS[decision]
    exact = (
        decision == "match"
        and birth == "exact"
        and family.level == "exact"
        and given.level in {"exact", "first-token"}
        and not swapped
    )
    return MatchResult(
        decision,
        round(min(high, max(low, score)), 4),
        tuple(reasons),
        weight=weight,
        exact=exact,
        contradicted=contradicted,
        given_level=given_level,
        birth_level=birth,
        family_level=family.level,
        postcode_level=postcode_level,
        given_vowel_swap=given.level in {"typo", "nickname"}
        and _vowel_swap(la.given_name, index.given_name),
    )


def _vowel_swap(a: str, b: str) -> bool:
    ta, tb = names.tokens(a), names.tokens(b)
    if not ta or not tb or len(ta[0]) != len(tb[0]):
        return False
    diffs = [(x, y) for x, y in zip(ta[0], tb[0], strict=True) if x != y]
    # "y" is not one here: Wilfred/Wylfred is a spelling, not another name.
    return len(diffs) == 1 and all(ch in "aeiou" for ch in diffs[0])


def _postcode_level(a: str | None, b: str | None, grade: str | None) -> str:
    if grade is not None:
        return grade.removeprefix("postcode-")
    if _postcode_key(a) and _postcode_key(b):
        return "different"
    return "missing"


def _grade_birth_date(a: date | None, b: date | None) -> str:
    """Grade two birth dates; the grades are the common ways dates get mistyped."""
    if a is None or b is None:
        return "missing"
    if a == b:
        return "exact"
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return "day-month-transposed"
    if a.month == b.month and a.day == b.day and abs(a.year - b.year) == 1:
        return "year-off-by-one"
    sa, sb = f"{a.year:04d}{a.month:02d}{a.day:02d}", f"{b.year:04d}{b.month:02d}{b.day:02d}"
    if len(sa) == len(sb) and sum(x != y for x, y in zip(sa, sb, strict=True)) == 1:
        return "one-digit"
    return "mismatch"


def _grade_family(a: str, b: str) -> _Grade:
    """Grade two family names; double-barrelled halves count as partial, not exact."""
    ka, kb = names.key(a), names.key(b)
    if not ka or not kb:
        return _Grade("missing", _NAME_SCORE["missing"], "family-name-missing")
    if ka == kb:
        return _Grade("exact", 1.0, "family-name-exact")
    sig_a, sig_b = names.significant(names.tokens(a)), names.significant(names.tokens(b))
    if sig_a and sig_b and (sig_a <= sig_b or sig_b <= sig_a):
        return _Grade("partial", _NAME_SCORE["partial"], "family-name-partial")
    jw = names.jaro_winkler(ka, kb)
    one_slip = min(len(ka), len(kb)) >= MIN_EDIT_FAMILY and names.within_one_edit(ka, kb)
    if (jw >= TYPO_JW or one_slip) and not _surname_extension(ka, kb):
        return _Grade("typo", max(jw, TYPO_JW), "family-name-typo")
    alike = _sounds_or_reads_alike(ka, kb)
    if alike is not None and not _surname_extension(ka, kb):
        return _Grade("typo", TYPO_JW, f"family-name-{alike}")
    if jw >= SIMILAR_JW:
        return _Grade("similar", jw * 0.8, "family-name-similar")
    return _Grade("mismatch", jw * 0.4, "family-name-mismatch")


def _surname_extension(a: str, b: str) -> bool:
    """Harris/Harrison, Williams/Williamson: a different surname, not a typo.

    One letter more (Robert/Roberts) is as often a slip as a different name, so
    only extensions of two or more letters count.
    """
    short, long_ = sorted((a, b), key=lambda s: (len(s), s))
    return long_.startswith(short) and len(long_) - len(short) >= 2


def _grade_given(a: str, b: str) -> _Grade:
    """Grade two given names, which may carry middle names on either side."""
    ta, tb = names.tokens(a), names.tokens(b)
    if not ta or not tb:
        return _Grade("missing", _NAME_SCORE["missing"], "given-name-missing")
    first_a, first_b = ta[0], tb[0]
    if len(first_a) == 1 or len(first_b) == 1:
        # An initial is never strong evidence, even when both sides give only "J".
        if first_a[0] == first_b[0]:
            return _Grade("initial", _NAME_SCORE["initial"], "given-name-initial")
        return _Grade("mismatch", 0.0, "given-name-mismatch")
    if "".join(ta) == "".join(tb):
        return _Grade("exact", 1.0, "given-name-exact")
    rest_a, rest_b = set(ta[1:]), set(tb[1:])
    # Middle names only conflict when both sides give some and none agree
    # ("Mary Jane" vs "Mary Ann" may be twins; "Mary" vs "Mary Jane" is not).
    rest_ok = not rest_a or not rest_b or bool(rest_a & rest_b)
    jw_first = names.jaro_winkler(first_a, first_b)
    if rest_ok:
        if first_a == first_b:
            return _Grade("first-token", _NAME_SCORE["first-token"], "given-name-first-token")
        if names.are_variants(first_a, first_b):
            return _Grade("nickname", _NAME_SCORE["nickname"], "given-name-nickname")
        shortest = min(len(first_a), len(first_b))
        one_slip = shortest >= MIN_SLIP_GIVEN and names.within_one_edit(
            first_a, first_b, slips_only=shortest < MIN_EDIT_GIVEN
        )
        if jw_first >= TYPO_JW or one_slip:
            if names.are_distinct_forms(first_a, first_b):
                return _Grade("similar", jw_first * 0.5, "given-name-distinct-variant")
            return _Grade("typo", max(jw_first, TYPO_JW), "given-name-typo")
        alike = _sounds_or_reads_alike(first_a, first_b)
        if alike is not None and not names.are_distinct_forms(first_a, first_b):
            return _Grade("typo", TYPO_JW, f"given-name-{alike}")
    words_a, words_b = set(ta), set(tb)
    if any(len(w) > 1 for w in words_a & words_b) or any(
        names.are_variants(x, y) for x in words_a for y in words_b
    ):
        return _Grade("partial", _NAME_SCORE["partial"], "given-name-partial")
    jw = names.jaro_winkler("".join(ta), "".join(tb))
    if names.are_distinct_forms(first_a, first_b):
        return _Grade("similar", jw * 0.5, "given-name-distinct-variant")
    if jw >= SIMILAR_JW:
        return _Grade("similar", jw * 0.7, "given-name-similar")
    return _Grade("mismatch", jw * 0.4, "given-name-mismatch")


MIN_SOUND = 3
"""Phonetic keys shorter than this (Leo/Leah "l", Ella/Ellie "el") say too little
to call two names one name spelt differently."""


def _sounds_or_reads_alike(a: str, b: str) -> str | None:
    """ "phonetic" when two different spellings share a phonetic key of at least
    ``MIN_SOUND`` sounds (Henrie/Henry, Philips/Fillips), "misread" when they are
    the same or one keystroke apart once OCR's confusions are folded
    (Calharn/Calham, Gilshavv/Gilshaw); else None. Graded as a typo: one name
    written differently, with the same weight and the same limits (never two
    of them and a birth date out for a "match")."""
    sa, sb = names.sound(a), names.sound(b)
    if sa == sb and len(sa) >= MIN_SOUND:
        return "phonetic"
    ma, mb = names.misread(a), names.misread(b)
    if (ma, mb) != (a, b) and (ma == mb or names.within_one_edit(ma, mb)):
        return "misread"
    return None


def _crossed(given: str, family: str) -> str | None:
    """How a given name recorded where the family name belongs agrees with it:
    "exact" (all of it, or its first word: the middle name is usually lost),
    "typo" (one keystroke, Jaro-Winkler >= ``TYPO_JW``, or a known nickname),
    else None."""
    key = names.key(family)
    words = names.tokens(given)
    if not key or not words:
        return None
    forms = {names.key(given), words[0]}
    if key in forms:
        return "exact"
    if names.are_variants(words[0], key):
        return "typo"  # a nickname: "Gilfield, Freddy" for "Freddie Gilfield"
    for form in forms:
        one_slip = min(len(form), len(key)) >= MIN_EDIT_FAMILY and names.within_one_edit(form, key)
        near = one_slip or names.jaro_winkler(form, key) >= TYPO_JW
        if near and not _surname_extension(form, key):
            return "typo"
    return None


def _not_initial(name: str) -> bool:
    words = names.tokens(name)
    return bool(words) and len(words[0]) > 1


def _sex(value: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    return _SEXES.get(value.strip().casefold())


def _postcode_key(value: str | None) -> str:
    """The postcode in capitals without spaces; empty when missing or too short to be one."""
    if not isinstance(value, str):
        return ""
    key = "".join(ch for ch in value.upper() if ch.isascii() and ch.isalnum())
    return key if len(key) >= 5 else ""


def _grade_postcode(a: str | None, b: str | None) -> str | None:
    """Same postcode or same district is weak support; a difference is no evidence."""
    ca, cb = _postcode_key(a), _postcode_key(b)
    if not ca or not cb:
        return None
    if ca == cb:
        return "postcode-exact"
    if ca[:-3] == cb[:-3]:
        return "postcode-district"
    return None
