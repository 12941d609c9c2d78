"""The synthetic children and LA copies that matching is measured on (bench/synthetic.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date

from bench.synthetic import (
    ERROR_WEIGHTS,
    children,
    dataset,
    la_record,
    nhs_numbers,
    slipped_number,
    wrong_number,
)
from cpis.matching import names, nhs_number

AS_OF = date(2026, 4, 1)


def test_the_same_seed_gives_the_same_data() -> None:
    """A benchmark is only reproducible if the generator is."""
    assert dataset(7, 500, as_of=AS_OF) == dataset(7, 500, as_of=AS_OF)
    assert dataset(7, 500, as_of=AS_OF) != dataset(8, 500, as_of=AS_OF)


def test_numbers_are_valid_distinct_and_synthetic() -> None:
    """Every NHS number is from the 999 range with a valid check digit, never reused."""
    numbers = nhs_numbers(random.Random(1), 5000)
    assert len(set(numbers)) == 5000
    assert all(nhs_number.is_valid(n) and nhs_number.is_synthetic(n) for n in numbers)


def test_children_are_aged_0_to_17_with_households_and_twins() -> None:
    """Ages, sexes and households look like a child population."""
    kids = children(random.Random(2), 4000, as_of=AS_OF)
    assert len(kids) == 4000
    assert all(0 <= (AS_OF - c.birth_date).days < 18 * 366 for c in kids)
    assert {c.sex for c in kids} == {"male", "female"}
    by_household: dict[int, list[str]] = {}
    for c in kids:
        by_household.setdefault(c.household, []).append(c.family_name)
    assert any(len(members) > 1 for members in by_household.values())
    twins = [c for c in kids if c.twin_of]
    assert twins, "some children are twins"
    numbers = {c.nhs_number: c for c in kids}
    for c in twins:
        twin = numbers[c.twin_of or ""]
        assert twin.birth_date == c.birth_date and twin.household == c.household
        assert names.key(twin.given_names.split()[0]) != names.key(c.given_names.split()[0])
    family_names = [c.family_name for c in kids]
    assert any("-" in n for n in family_names), "double-barrelled surnames"
    assert any(n.startswith(("Mc", "Mac", "O'")) for n in family_names)
    assert any(not n.isascii() for n in family_names + [c.given_names for c in kids])


def test_frequencies_are_skewed_like_real_names() -> None:
    """A few names are common and most are rare, so namesakes occur as they do."""
    kids = children(random.Random(3), 6000, as_of=AS_OF)
    counts = Counter(c.family_name for c in kids)
    assert counts.most_common(1)[0][1] > 40
    assert sum(1 for n in counts.values() if n <= 3) > len(counts) / 3


def test_every_error_kind_can_be_applied_and_is_recorded() -> None:
    """Each corruption appears, and a faithful copy is identical to the child."""
    rng = random.Random(4)
    kids = children(rng, 2000, as_of=AS_OF)
    seen: Counter[str] = Counter()
    for child in kids:
        copy = la_record(rng, child, as_of=AS_OF)
        seen.update(copy.errors)
        if not copy.errors:
            assert (copy.given_name, copy.family_name, copy.birth_date) == (
                child.given_names,
                child.family_name,
                child.birth_date,
            )
        assert copy.number_is_right
    assert set(ERROR_WEIGHTS) <= set(seen)


def test_nicknames_come_from_the_matchers_own_table() -> None:
    """A nickname copy uses a variant names.are_variants agrees with."""
    rng = random.Random(5)
    kids = [
        c
        for c in children(rng, 3000, as_of=AS_OF)
        if names.variants_of(names.key(c.given_names.split()[0]))
    ]
    for child in kids[:200]:
        copy = la_record(rng, child, as_of=AS_OF, errors=1)
        if copy.errors == ("nickname",):
            first = names.key(child.given_names.split()[0])
            assert names.are_variants(names.key(copy.given_name), first)


def test_a_slipped_number_passes_the_check_digit_and_differs() -> None:
    """The wrong numbers CPR03 must catch are valid numbers, mostly someone else's."""
    rng = random.Random(6)
    numbers = nhs_numbers(rng, 3000)
    known = frozenset(numbers)
    landed = 0
    for n in numbers[:300]:
        slipped = slipped_number(rng, n, known)
        assert slipped is not None and slipped != n and nhs_number.is_valid(slipped)
        assert sum(a != b for a, b in zip(n, slipped, strict=True)) <= 2
        landed += slipped in known
    assert landed > 200


def test_wrong_numbers_are_a_siblings_or_a_slip() -> None:
    """A copy with a wrong number says so and how; the truth stays with it."""
    rng = random.Random(7)
    kids = children(rng, 2000, as_of=AS_OF)
    known = frozenset(c.nhs_number for c in kids)
    household = [c for c in kids if c.household == kids[0].household]
    wrong = wrong_number(rng, kids[0], household, known)
    copy = la_record(rng, kids[0], as_of=AS_OF, wrong_number=wrong)
    assert not copy.number_is_right
    assert copy.errors[0] == f"wrong-number-{wrong.kind}"
    assert copy.child == kids[0]


def test_dataset_shape() -> None:
    """Uploads carry numbers (a share wrong); traces carry none, some for absent children."""
    data = dataset(9, 2000, as_of=AS_OF, wrong_number_rate=0.2)
    assert len(data.index) == 2000
    assert len(data.uploads) == 1000 and len(data.traces) == 500
    assert all(r.nhs_number is not None for r in data.uploads)
    assert 100 < sum(not r.number_is_right for r in data.uploads) < 300
    assert all(r.nhs_number is None for r in data.traces)
    in_index = {c.nhs_number for c in data.index}
    assert sum(r.child.nhs_number not in in_index for r in data.traces) == 25
