"""Blocking keys: which index records are worth comparing with a traced child.

Tracing (``cpis trace``) cannot compare a child with every person in the index,
so each index record is filed under a few keys and a query looks up the keys
its own demographics could have been filed under, allowing for the errors LA
records are known to carry: day and month transposed, the year off by one,
given and family names recorded the wrong way round, one half of a
double-barrelled surname. Without a birth date, the only keys left are
surname + first given name, so a query without one also looks up every
spelling one keystroke away from its first given name (with its surname) and
from its surname (with its first given name): a typo and a missing birth date
together are common, and the postcode can still make such a child certain.
Names with a typo *and* a wrong birth date are missed by design.

The keys are plain strings here; the local index stores only keyed hashes of
them (``Vault.blind``), so its table reveals no name or birth date.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from cpis.matching import names
from cpis.model.persons import IndexPerson, PersonQuery


def _surnames(family: str | None) -> frozenset[str]:
    return names.significant(names.tokens(family or ""))


def _first_given(given: str | None) -> str | None:
    words = names.tokens(given or "")
    return words[0] if words else None


def record_keys(
    family_name: str | None, given_names: str | None, birth_date: date | None
) -> frozenset[str]:
    """The keys an index record is filed under."""
    keys: set[str] = set()
    first = _first_given(given_names)
    if birth_date is not None:
        keys.add(f"dob:{birth_date.isoformat()}")
    for surname in _surnames(family_name):
        if birth_date is not None:
            keys.add(f"fam-yob:{surname}:{birth_date.year}")
        if first is not None:
            keys.add(f"fam-given:{surname}:{first}")
    return frozenset(keys)


def _dates(birth_date: date | None) -> Iterable[date]:
    if birth_date is None:
        return ()
    out = {birth_date}
    if birth_date.day <= 12:
        with contextlib.suppress(ValueError):  # 31/12 has no transposed form
            out.add(date(birth_date.year, birth_date.day, birth_date.month))
    return out


def query_keys(
    family_name: str | None, given_names: str | None, birth_date: date | None
) -> frozenset[str]:
    """Every key a record matching these demographics could be filed under."""
    keys: set[str] = {f"dob:{d.isoformat()}" for d in _dates(birth_date)}
    family_words = _surnames(family_name)
    given_words = names.significant(names.tokens(given_names or ""))
    first = _first_given(given_names)
    # Names the wrong way round: the LA's given name is the index's surname.
    pairs: set[tuple[str, str | None]] = {(s, first) for s in family_words}
    pairs |= {(g, _first_given(family_name)) for g in given_words}
    years = () if birth_date is None else range(birth_date.year - 1, birth_date.year + 2)
    for surname, given in pairs:
        keys.update(f"fam-yob:{surname}:{y}" for y in years)
        if given is not None:
            keys.add(f"fam-given:{surname}:{given}")
    if birth_date is None and first is not None:
        for surname in family_words:
            keys.update(f"fam-given:{surname}:{g}" for g in one_keystroke(first))
            keys.update(f"fam-given:{s}:{first}" for s in one_keystroke(surname))
    return frozenset(keys)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def one_keystroke(word: str) -> frozenset[str]:
    """Every spelling one keystroke from ``word`` (a letter dropped, added, swapped
    with the next, or changed), for names of three letters or more."""
    if len(word) < 3:
        return frozenset()
    out: set[str] = set()
    for i in range(len(word) + 1):
        out.update(word[:i] + ch + word[i:] for ch in _LETTERS)
        if i < len(word):
            out.add(word[:i] + word[i + 1 :])
            out.update(word[:i] + ch + word[i + 1 :] for ch in _LETTERS)
        if i + 1 < len(word):
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    out.discard(word)
    return frozenset(out)


class BlockIndex:
    """An in-memory index of record keys: the blocking half of tracing, without storage.

    The local person index keeps the same keys (hashed) in PostgreSQL; this
    one serves tests, the matching benchmark and demo data. Values are the
    callers' own ids (NHS numbers).
    """

    def __init__(self) -> None:
        self._by_key: dict[str, set[str]] = {}

    def add(
        self,
        record_id: str,
        family_name: str | None,
        given_names: str | None,
        birth_date: date | None,
    ) -> None:
        for key in record_keys(family_name, given_names, birth_date):
            self._by_key.setdefault(key, set()).add(record_id)

    def candidates(
        self, family_name: str | None, given_names: str | None, birth_date: date | None
    ) -> list[str]:
        """Ids filed under any key the query could be filed under, most keys shared first."""
        hits: dict[str, int] = {}
        for key in query_keys(family_name, given_names, birth_date):
            for record_id in self._by_key.get(key, ()):
                hits[record_id] = hits.get(record_id, 0) + 1
        return sorted(hits, key=lambda r: (-hits[r], r))


class MemoryIndex:
    """A :class:`~cpis.ports.person_index.PersonIndex` in memory on these keys, as the local index
    files them: for the matching benchmark and tests of the code that uses an index.
    ``searches`` counts the searches made."""

    name = "memory"

    def __init__(self, people: Sequence[IndexPerson]) -> None:
        self.searches = 0
        self._by_number = {p.nhs_number: p for p in people}
        self._blocks = BlockIndex()
        for p in people:
            self._blocks.add(p.nhs_number, p.family_name, p.given_names, p.birth_date)

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        return {n: self._by_number[n] for n in nhs_numbers if n in self._by_number}

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        self.searches += 1
        found = self._blocks.candidates(query.family_name, query.given_names, query.birth_date)
        return [self._by_number[n] for n in found[:limit]]
