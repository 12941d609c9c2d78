"""Blocking keys: which index records are worth comparing with a traced child.

Tracing (``cpis trace``) and the upload path's rival search cannot compare a
child with every person in the index, so each index record is filed under a
few keys and a query looks up the keys its own demographics could have been
filed under, allowing for the errors LA records are known to carry. Every
kind of key works without one of the fields, so no field's absence leaves a
query with nothing selective to look up (issue 11: a query without a birth
date used to send hundreds of keys, one per spelling a keystroke away, and
the index answered it with a scan of the whole table):

``dob:DATE``                  the birth date (a query also asks day and month transposed)
``fy:SURNAME:YEAR``           each surname word + birth year (a query asks the year ± 1)
``sy:SOUND:YEAR``             the same with the surname's phonetic key (a misspelt surname)
``fg:SURNAME:GIVEN``          each surname word + each given name (a middle name used as
                              the known-as name is a given name too)
``sg:SOUND:SOUND``            the same, phonetic (a spelling that sounds the same, a slip
                              that keeps the consonants)
``fi:SURNAME:INITIAL``        each surname word + each given name's initial (initials, a
                              slip in the given name)
``gi:GIVEN:INITIAL``          each given name + the surname's initial (a slip in the surname)
``gm:SOUND:YYYY-MM``          the first given name's phonetic key + birth month (a changed
                              surname and a slip in the day)

Names the wrong way round are asked both ways; a double-barrelled surname is
filed under each half and the halves run together (Smith-Jones, Smithjones,
Jones). What is still missed by design: a changed surname with no birth
date, and a surname slip on its first letter with no birth date.

``KEYS_VERSION`` names this scheme: the local index re-keys a row when it
changes (``cpis.adapters.postgres``), so a load after an upgrade re-files
everyone. The keys are plain strings here; the local index stores only keyed
hashes of them (``Vault.blind``), so its table reveals no name or birth date.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from cpis.matching import names
from cpis.model.persons import IndexPerson, PersonQuery

KEYS_VERSION = 2
"""The key scheme above; bump it whenever a key changes, so that loads re-key."""


def _surnames(family: str | None) -> frozenset[str]:
    words = names.significant(names.tokens(family or ""))
    if len(words) > 1:  # a double-barrelled name is also written as one word
        words |= {"".join(w for w in names.tokens(family or "") if w in words)}
    return words


def _givens(given: str | None) -> tuple[str, ...]:
    return tuple(w for w in names.tokens(given or "") if len(w) > 1)


def _name_keys(surnames: Iterable[str], givens: Sequence[str], initials: Iterable[str]) -> set[str]:
    keys: set[str] = set()
    for s in surnames:
        keys.update(f"fi:{s}:{i}" for i in initials)
        for g in givens:
            keys.add(f"fg:{s}:{g}")
            keys.add(f"sg:{names.sound(s)}:{names.sound(g)}")
            keys.add(f"gi:{g}:{s[0]}")
    return keys


def record_keys(
    family_name: str | None, given_names: str | None, birth_date: date | None
) -> frozenset[str]:
    """The keys an index record is filed under."""
    surnames, givens = _surnames(family_name), _givens(given_names)
    initials = {w[0] for w in names.tokens(given_names or "")}
    keys = _name_keys(surnames, givens, initials)
    if birth_date is not None:
        keys.add(f"dob:{birth_date.isoformat()}")
        year = birth_date.year
        for s in surnames:
            keys.add(f"fy:{s}:{year}")
            keys.add(f"sy:{names.sound(s)}:{year}")
        if givens:
            keys.add(f"gm:{names.sound(givens[0])}:{birth_date:%Y-%m}")
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
    keys: set[str] = set()
    dates = tuple(_dates(birth_date))
    # Names the wrong way round: the LA's given name is the index's surname.
    for family, given in ((family_name, given_names), (given_names, family_name)):
        surnames, givens = _surnames(family), _givens(given)
        first_words = names.tokens(given or "")[:1]
        keys |= _name_keys(surnames, givens, {w[0] for w in first_words})
        for born in dates:
            for year in range(born.year - 1, born.year + 2):
                for s in surnames:
                    keys.add(f"fy:{s}:{year}")
                    keys.add(f"sy:{names.sound(s)}:{year}")
                if givens:
                    keys.add(f"gm:{names.sound(givens[0])}:{year:04d}-{born.month:02d}")
    keys.update(f"dob:{d.isoformat()}" for d in dates)
    return frozenset(keys)


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
