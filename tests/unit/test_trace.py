"""Tracing decisions (cpis.matching.trace): certain, possible or none, from candidates.

Every NHS number is from the 999 range and every name is invented.
"""

from __future__ import annotations

from datetime import date

from cpis.matching.demographics import Person
from cpis.matching.trace import decide, resolve
from cpis.model.persons import IndexPerson

A, B, C, D = "9990000018", "9990000026", "9990000034", "9990000042"
BORN = date(2016, 4, 3)
CHILD = Person("Tamsin", "Quarrell", BORN)


def ix(number: str, given: str = "Tamsin", family: str = "Quarrell", **kw: object) -> IndexPerson:
    return IndexPerson(number, family, given, kw.pop("born", BORN), **kw)  # type: ignore[arg-type]


def test_one_clear_match_is_certain() -> None:
    """One candidate agreeing on everything, the others far behind: certain."""
    decision = decide(
        CHILD, [ix(A), ix(B, given="Morwenna"), ix(C, given="Pieter", family="Vanderwielen")]
    )
    assert decision.status == "certain"
    assert decision.nhs_number == A
    assert "given-name-exact" in decision.reasons
    assert decision.score is not None and decision.score >= 0.9


def test_no_candidates_is_none() -> None:
    decision = decide(CHILD, [])
    assert (decision.status, decision.nhs_number, decision.reasons) == (
        "none",
        None,
        ("no-candidate",),
    )


def test_only_weak_candidates_is_none() -> None:
    decision = decide(CHILD, [ix(A, given="Pieter", family="Vanderwielen", born=date(2010, 1, 1))])
    assert decision.status == "none" and decision.reasons == ("no-close-candidate",)


def test_a_namesake_one_digit_of_the_date_away_makes_it_possible() -> None:
    """Two children with the same name, birth dates one digit apart: a person must look."""
    decision = decide(CHILD, [ix(A), ix(B, born=date(2016, 4, 13))])
    assert decision.status == "possible"
    assert decision.nhs_number == A  # the better one is proposed
    assert "several-candidates" in decision.reasons
    assert [c.nhs_number for c in decision.candidates] == [A, B]


def test_two_exact_namesakes_are_never_certain() -> None:
    decision = decide(CHILD, [ix(A), ix(B)])
    assert decision.status == "possible"


def test_a_match_resting_on_a_missing_part_is_only_possible() -> None:
    """A child with no birth date, or a changed surname, may match a tied NHS number,
    but among candidates it is not certain."""
    no_date = decide(Person("Tamsin", "Quarrell", None), [ix(A)])
    assert no_date.status == "possible" and no_date.nhs_number == A
    new_surname = decide(Person("Tamsin", "Trask", BORN), [ix(A)])
    assert new_surname.status == "possible"


def test_a_changed_surname_or_no_given_name_is_certain_with_the_postcode_too() -> None:
    """Given name and birth date alone (a namesake in another family has those)
    are not enough; the postcode agreeing as well is, when no one else comes close."""
    home = "TR1 2AB"
    moved_on = Person("Tamsin", "Trask", BORN, postcode=home)
    assert decide(moved_on, [ix(A, postcode=home)]).status == "certain"
    elsewhere = Person("Tamsin", "Trask", BORN, postcode="LS6 9ZZ")
    assert decide(elsewhere, [ix(A, postcode=home)]).status == "possible"
    nameless = Person("", "Quarrell", BORN, postcode=home)
    assert decide(nameless, [ix(A, postcode=home)]).status == "certain"
    twins = [ix(A, postcode=home), ix(B, given="Morwenna", postcode=home)]
    assert decide(nameless, twins).status == "possible"


def test_a_year_out_is_certain_when_unique() -> None:
    decision = decide(Person("Tamsin", "Quarrell", date(2015, 4, 3)), [ix(A)])
    assert (decision.status, decision.nhs_number) == ("certain", A)


def test_a_given_name_that_differs_or_only_shares_a_word_is_never_certain() -> None:
    """Twins agree on everything but the given name, and often share a middle name."""
    home = "TR1 2AB"
    for given in ("Jory Rose", "T Rose", "Morwenna"):
        la = Person(given, "Quarrell", BORN, postcode=home)
        decision = decide(la, [ix(A, given="Tamsin Rose", postcode=home)])
        assert decision.status != "certain", given
    louise = Person("Louise", "Quarrell", BORN, sex="female", postcode=home)
    assert decide(louise, [ix(A, given="Louis", postcode=home)]).status != "certain"


def test_typo_and_transposed_date_are_still_certain_when_unique() -> None:
    decision = decide(Person("Tamsni", "Quarrell", BORN), [ix(A)])
    assert decision.status == "certain"
    decision = decide(Person("Tamsin", "Quarrell", date(2016, 3, 4)), [ix(A)])
    assert decision.status == "certain"


def test_superseded_numbers_are_followed_and_merged_records_count_once() -> None:
    """The old and the new record of one merged person are one candidate, proposed
    under the new number."""
    old = ix(A, superseded_by=B, active=False)
    new = ix(B)
    decision = decide(CHILD, [old, new])
    assert decision.status == "certain"
    assert decision.nhs_number == B
    only_old = decide(CHILD, [old])
    assert only_old.status == "certain" and only_old.nhs_number == B
    assert "superseded-number-followed" in only_old.reasons
    via_successor = decide(CHILD, [ix(A, superseded_by=C)], successors={C: ix(C, superseded_by=D)})
    assert via_successor.nhs_number == D


def test_retired_numbers_and_loops_are_never_proposed() -> None:
    assert decide(CHILD, [ix(A, active=False)]).status == "none"
    loop = [ix(A, superseded_by=B), ix(B, superseded_by=A)]
    assert decide(CHILD, loop).status == "none"
    assert resolve(ix(A, active=False), {}) is None


def test_a_sensitive_record_is_possible_with_nothing_revealed() -> None:
    """No number, no score, one reason: the LA learns only that a person must look."""
    decision = decide(CHILD, [ix(A, sensitive=True, postcode="TR1 2AB")])
    assert decision.status == "possible"
    assert decision.nhs_number is None and decision.score is None
    assert decision.reasons == ("sensitive-record",)
    assert decision.candidates == ()
    # A sensitive namesake also stops a non-sensitive match being certain.
    mixed = decide(CHILD, [ix(A), ix(B, sensitive=True)])
    assert (mixed.status, mixed.nhs_number, mixed.reasons) == (
        "possible",
        None,
        ("sensitive-record",),
    )
    # Sensitivity carried through a merge counts.
    merged = decide(CHILD, [ix(A, superseded_by=B, sensitive=True), ix(B)])
    assert merged.reasons == ("sensitive-record",)


def test_the_outcome_does_not_depend_on_the_index_order() -> None:
    pool = [ix(A), ix(B, born=date(2016, 4, 13)), ix(C, given="Morwenna")]
    assert decide(CHILD, pool) == decide(CHILD, list(reversed(pool)))


def test_reasons_never_carry_personal_data() -> None:
    decision = decide(CHILD, [ix(A), ix(B, born=date(2016, 4, 13))])
    for reason in decision.reasons:
        assert reason.replace("-", "").isalpha() and reason.islower()


# --- issue 11: certain survives twins and a disagreeing postcode -------------------------


def test_an_absent_child_is_not_certain_on_a_twin_whose_name_differs_by_a_vowel() -> None:
    """The child is not in the index; his twin, one vowel away, is: a person must look."""
    la = Person("Isabella", "Quarrell", BORN, "female", "TR1 2AB")
    decision = decide(la, [ix(A, given="Isabelle", sex="female", postcode="TR1 2AB")])
    assert decision.status == "possible" and decision.nhs_number == A


def test_twins_in_the_index_keep_an_inexact_given_name_at_possible() -> None:
    """A nickname fits one twin, and the other shares birth date and surname: possible,
    even though the other twin's name is plainly different."""
    twins = [ix(A, given="Thomas", postcode="TR1 2AB"), ix(B, given="Isla", postcode="TR1 2AB")]
    decision = decide(Person("Tom", "Quarrell", BORN, postcode="TR1 2AB"), twins)
    assert decision.status == "possible" and decision.nhs_number == A
    assert "twin-in-index" in decision.reasons


def test_twins_told_apart_by_an_exact_given_name_stay_certain() -> None:
    """Oliver, exactly, and his twin Isla: the given name tells them apart."""
    twins = [ix(A, given="Oliver"), ix(B, given="Isla")]
    decision = decide(Person("Oliver", "Quarrell", BORN), twins)
    assert decision.status == "certain" and decision.nhs_number == A


def test_a_year_slip_onto_a_namesakes_birth_date_with_another_postcode_is_possible() -> None:
    """The LA's year is one out and lands on a namesake's birth date; the postcodes
    disagree: possible at best."""
    namesake = ix(A, postcode="LS6 2QT")
    decision = decide(Person("Tamsin", "Quarrell", BORN, postcode="TR1 2AB"), [namesake])
    assert decision.status == "possible"
    same_place = decide(Person("Tamsin", "Quarrell", BORN, postcode="LS6 2QT"), [namesake])
    assert same_place.status == "certain"


def test_a_birth_date_one_digit_out_is_certain_only_with_the_postcode() -> None:
    """Issue 11: a day or year digit slip. Some 25 dates are one digit away, so only
    the postcode agreeing as well makes it certain."""
    slipped = date(2016, 4, 13)
    home = "TR1 2AB"
    assert (
        decide(Person("Tamsin", "Quarrell", slipped, postcode=home), [ix(A, postcode=home)]).status
        == "certain"
    )
    assert (
        decide(Person("Tamsin", "Quarrell", slipped), [ix(A, postcode=home)]).status == "possible"
    )
