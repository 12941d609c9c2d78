"""Synthetic children and the LA's corrupted copies of them, with the truth recorded.

Matching is measured on data like this (``bench/matching``, and the tests in
``tests/unit/test_synthetic.py`` that keep it honest). It is test data, so it
lives with the benchmarks, not in the product; it has to look like the real
thing where matching cares:

- names drawn with UK frequencies (a few very common, a long tail), with
  double-barrelled surnames, Mc/Mac, O'-names, accents, and middle names;
- households: siblings share a surname and a postcode, and some are twins
  sharing a birth date, often with look-alike names (Louis and Louise);
- children from 0 to 17 years old on the ``as_of`` date;
- NHS numbers from the 999 range (never issued to a person) with valid check
  digits, allocated from one contiguous block as real numbers are, so a
  mistyped number often lands on another real child's number.

An LA's copy of a child (:class:`LaRecord`) carries the errors LA records are
known to have, each named in ``errors`` so a benchmark can tell why a record
was or was not matched: typos, nicknames (from the same table ``names`` uses),
given and family names swapped, day and month transposed, the year off by
one, missing fields, a double-barrelled surname with its hyphen dropped or cut
to one half, a changed surname, a middle name added or dropped, and harmless
formatting (capitals, accents or apostrophes dropped, Mac written Mc). Issue 11
added the ways families and case workers write names that the matcher was not
built around, each its own class: the middle name used as the known-as name,
initials for the given name, a spelling that sounds the same (rules of English
spelling, not the matcher's phonetic key), characters misread by OCR or
mistyped, a double-barrelled surname split, joined or shortened, a
step-parent's surname, accents garbled (UTF-8 read as Windows-1252, or a "?"
for a letter), a slip of a digit in the day or the year, and no birth date
where the index holds a namesake (tagged after the fact, see ``dataset``).
Populations carry namesakes: children in other families with the same first
given name and surname (``NAMESAKE_RATE``). A share
of copies carries a *wrong* NHS number: a sibling's (a twin's when there is
one), or a slip that changes a digit and still passes the check digit, which
is what CPR03 exists to catch.

Everything is driven by one ``random.Random`` the caller seeds, so a seed
gives the same data on every run and every machine. Pure: stdlib only.
"""

from __future__ import annotations

import contextlib
import random
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import NamedTuple

from cpis.matching import names
from cpis.matching.nhs_number import check_digit

# --- name tables ------------------------------------------------------------------------------
# Weights are rough births-per-year shares for children born 2008-2025 in
# England and Wales (ONS baby names) and surname frequencies from the
# electoral roll: what matters is the shape (Zipf-like), not the exact figures.


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _weighted(table: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    pairs = [item.rsplit(":", 1) for item in table.split()]
    return tuple(p[0].replace("_", " ") for p in pairs), tuple(int(p[1]) for p in pairs)


_BOYS = _weighted(
    """
    Oliver:60 Jack:58 Harry:52 George:45 Noah:44 Charlie:42 Jacob:40 Alfie:36 Freddie:34
    Oscar:33 Leo:33 Thomas:32 William:31 James:30 Joshua:30 Henry:28 Archie:28 Ethan:27
    Muhammad:27 Isaac:24 Joseph:24 Alexander:22 Samuel:22 Daniel:21 Logan:20 Edward:19
    Lucas:19 Max:18 Mohammed:18 Benjamin:17 Mason:17 Harrison:16 Theo:16 Jake:15
    Sebastian:14 Finley:14 Arthur:14 Adam:13 Dylan:13 Riley:13 Zachary:12 Teddy:12 David:12
    Toby:11 Theodore:11 Elijah:11 Matthew:11 Jenson:10 Jayden:10 Harvey:10 Reuben:9 Luca:9
    Michael:9 Hugo:9 Lewis:9 Frankie:8 Luke:8 Stanley:8 Tommy:8 Jude:8 Blake:7 Louie:7
    Nathan:7 Gabriel:7 Charles:7 Bobby:7 Ryan:6 Tyler:6 Elliott:6 Albert:6 Rory:6 Louis:6
    Frederick:5 Ollie:5 Dexter:5 Liam:5 Callum:5 Ronnie:5 Kai:5 Aaron:5 Felix:5 Ibrahim:5
    Christopher:4 Jonathan:4 Nicholas:4 Robert:4 Patrick:4 Anthony:4 Andrew:4 Stephen:3
    Oisín:3 Rhys:3 Dominic:3 Julian:3 Mario:3 Marcus:3 Adrian:3 Christian:3 Aryan:3 Yusuf:3
    Kacper:3 Jakub:3 Mateo:2 José:2 Ciarán:2 Dáire:2 Rónán:2 Seán:2 Ayaan:2 Eesa:2
    Jean-Luc:1 Kofi:2 Chidi:2 Tariq:2 Omar:2 Hamza:2 Ali:2 Zain:2 Bilal:2 Arjun:2
    """
)
_GIRLS = _weighted(
    """
    Olivia:58 Amelia:56 Isla:44 Ava:42 Emily:40 Isabella:36 Mia:34 Poppy:33 Ella:32 Lily:32
    Evie:30 Grace:28 Sophia:27 Sophie:26 Jessica:26 Chloe:25 Charlotte:25 Ruby:24 Daisy:22
    Alice:22 Freya:21 Florence:20 Sienna:19 Matilda:19 Evelyn:18 Phoebe:18 Ivy:17 Layla:17
    Willow:16 Elsie:16 Rosie:15 Scarlett:15 Millie:14 Isabelle:14 Harper:14 Eliza:13
    Erin:13 Esme:12 Maya:12 Lucy:12 Hannah:11 Emilia:11 Lola:11 Elizabeth:11 Holly:10
    Thea:10 Imogen:10 Ellie:10 Lilly:9 Eleanor:9 Georgia:9 Molly:9 Zara:9 Amber:8 Maisie:8
    Katie:8 Megan:8 Lacey:7 Abigail:7 Anna:7 Emma:7 Summer:7 Niamh:6 Zoë:6 Chloé:3
    Aoife:4 Siân:3 Rhiannon:3 Leah:6 Bethany:5 Lauren:5 Rebecca:5 Amy:5 Jasmine:5 Aisha:5
    Fatima:5 Maryam:5 Zainab:4 Hafsa:3 Ayesha:4 Alexandra:4 Louise:3 Danielle:3 Olivia-Rose:2
    Mary-Beth:1 Catherine:3 Katherine:3 Victoria:4 Samantha:3 Charlotte-Mae:1 Nicola:2
    Maria:3 Julia:3 Frances:2 Christina:2 Renée:2 Zuzanna:2 Hanna:2 Amara:2 Chiamaka:2
    Adaeze:1 Priya:2 Aanya:2 Saoirse:2 Eabha:1 Jennifer:2 Margaret:1 Josephine:2 Patricia:1
    """
)
_SURNAMES = _weighted(
    """
    Smith:100 Jones:80 Williams:60 Taylor:55 Brown:55 Davies:46 Evans:38 Wilson:37
    Thomas:36 Johnson:34 Roberts:33 Robinson:31 Thompson:31 Wright:30 Walker:29 White:28
    Edwards:27 Hughes:26 Green:26 Hall:25 Lewis:25 Harris:24 Clarke:24 Patel:24 Jackson:23
    Wood:22 Turner:22 Martin:21 Cooper:21 Hill:21 Ward:20 Morris:20 Moore:20 Clark:19
    Lee:19 King:19 Baker:18 Harrison:18 Morgan:18 Allen:17 James:17 Scott:17 Phillips:16
    Watson:16 Davis:16 Parker:15 Price:15 Bennett:15 Young:15 Griffiths:14 Mitchell:14
    Kelly:14 Cook:14 Carter:14 Richardson:13 Bailey:13 Collins:13 Bell:13 Shaw:13 Murphy:13
    Miller:12 Cox:12 Richards:12 Khan:12 Marshall:12 Anderson:12 Simpson:11 Ellis:11
    Adams:11 Singh:11 Begum:11 Wilkinson:10 Foster:10 Chapman:10 Powell:10 Webb:10
    Rogers:10 Gray:10 Mason:10 Ali:10 Hunt:9 Hussain:9 Campbell:9 Matthews:9 Owen:9
    Palmer:9 Holmes:9 Mills:9 Barnes:8 Knight:8 Lloyd:8 Butler:8 Russell:8 Barker:8
    Fisher:8 Stevens:8 Jenkins:8 Murray:8 Dixon:7 Harvey:7 Graham:7 Pearson:7 Ahmed:7
    Fletcher:7 Walsh:7 Kaur:7 Gibson:7 Howard:7 Andrews:7 Stewart:6 Elliott:6 Reynolds:6
    Saunders:6 Payne:6 Fox:6 Ford:6 Pearce:6 Day:6 Brooks:6 West:6 Lawrence:6 Cole:6
    Atkinson:5 Bradley:5 Spencer:5 Gill:5 Dawson:5 Ball:5 Burton:5 O'Brien:5 Watts:5
    Rose:5 Booth:5 Perry:5 Ryan:5 Grant:5 Wells:5 Armstrong:5 Francis:5 Rees:5 Hayes:4
    Hart:4 Hudson:4 Newman:4 Barrett:4 Webster:4 Hunter:4 Gregory:4 Carr:4 Lowe:4 Page:4
    Marsh:4 Riley:4 Dunn:4 Woods:4 Parsons:4 Berry:4 Stone:4 Reid:4 Holland:4 Hawkins:4
    Harding:3 Porter:3 Robertson:3 Newton:3 Oliver:3 Reed:3 Kennedy:3 Williamson:3 Bird:3
    Gardner:3 Shah:3 Dean:3 Lane:3 Cooke:3 Bates:3 Henderson:3 Parry:3 Burgess:3 Bishop:3
    Walton:3 Burns:3 Nicholson:3 Shepherd:3 Ross:3 Cross:3 Long:3 Freeman:3 Warren:3
    Nicholls:3 Hamilton:3 Byrne:3 Sutton:3 McDonald:3 MacDonald:2 Yates:3 Hodgson:3
    Robson:3 Curtis:3 Hopkins:3 O'Connor:3 Harper:3 Coleman:3 Watkins:3 Moss:3 McCarthy:3
    Chambers:3 O'Neill:3 Griffin:3 Sharp:3 Hardy:3 Wheeler:3 Potter:3 Osborne:3
    Johnston:3 Gordon:3 Doyle:3 Wallace:3 George:3 Jordan:3 Hutchinson:3 McKenzie:2
    MacKenzie:2 McLean:2 MacLeod:2 McIntyre:2 Nowak:3 Kowalski:2 Wiśniewski:2
    Lewandowska:1 Zieliński:1 Müller:1 García:2 Fernández:1 López:2 Núñez:1 Öztürk:1
    Çelik:1 Y\u0131lmaz:1 Da_Silva:2 Dos_Santos:2 Van_der_Berg:1 De_Souza:2 Okafor:2
    Adeyemi:2 Mensah:2 Nguyen:2 Chen:2 Wang:2 Kumar:3 Sharma:2 Choudhury:2 Rahman:3
    Islam:3 Uddin:2 Akhtar:2 Mahmood:2 Iqbal:2 Mistry:2 Tregoning:1 Pengelly:1 Trelawny:1
    Penhaligon:1 Quarrell:1 Pascoe:2 Nancarrow:1 Kerr:2 Hogg:1 Fairbairn:1 Llewellyn:2
    Pryce:1 Bevan:2 Howells:2 Prosser:1 Vaughan:2 Ap_Rhys:1 St_Clair:1 D'Souza:1
    """
)
# The table above covers about a third of people; the rest have rarer names,
# made here from English place-name parts (Ashworth, Trecombe...).
_SURNAME_TABLE_SHARE = 0.35
_SURNAME_HEADS = _words(
    "Ash Black Brad Brook Calder Cart Craw Dal Elling Fair Hal Hart Hol Kings Lang Mar Mid Nor "
    "Pen Ray Rad Shel Small South Stan Tre Wal Wel Whit Wor Ather Bar Bos Chal Dun Gil Har Hep "
    "Mor Ock Pad Rams Sel Thorn Under Wake Wynd Ben Cal Fen Gar Lox Mab Nan Ped Quen Rid Sand "
    "Tal Ull Ver Yar"
)
_SURNAME_TAILS = _words(
    "ford ton ley worth field wood by ham well bridge combe ridge stone hurst cott more wick "
    "land shaw thwaite gate den over brook croft dale ington ett ey an ow ick"
)
# Rarer given names, each as likely as the least common in the tables.
_RARE_GIVEN = {
    "male": _words(
        "Alby Anwen Barnaby Bodhi Caspian Cormac Cosmo Digby Eben Ellery Emrys Fergus Gethin "
        "Gideon Hamish Idris Ivo Jago Jem Kit Lachlan Linus Lorcan Merlin Mungo Nye Orson Otto "
        "Peregrine Piran Quentin Rafferty Rufus Ruairi Silas Tarquin Tobias Ulysses Wilfred "
        "Xavier Yannick Zephyr Ambrose Bram Crispin Dashiell Evander Florian Gulliver"
    ),
    "female": _words(
        "Agnes Anouk Araminta Beatrix Bryony Cerys Clemency Delphine Dilys Elowen Ffion Genevieve "
        "Gwendolyn Hermione Honor Iona Juno Kerensa Lowenna Lyra Marigold Morwenna Nerys Ottilie "
        "Perpetua Peony Rosamund Saffron Seren Tamsin Tegan Verity Wren Xanthe Yasmin Zinnia "
        "Bronwen Carys Demelza Elspeth Fenella Greer Hester Isolde Jemima Kezia Linnea Mabli"
    ),
}
_RARE_GIVEN_SHARE = 0.12
# Families whose names carry accents (Irish, Welsh, Spanish, Portuguese, Polish,
# Czech, Hungarian, Turkish, German, French): issue 11 found accents dropped
# and garbled on the way, which a population of mostly ASCII names hides.
_ACCENTED_SHARE = 0.05
_ACCENTED_GIVEN = {
    "male": _words(
        "Oisín Seán Ciarán Rónán Dáire José Andrés Raúl Ángel Jesús João Tomás Łukasz "
        "Michał Paweł Jiří Tomáš Lukáš Dániel Ádám Gergő Çağan Göktuğ Jürgen Björn Noé Loïc"
    ),
    "female": _words(
        "Siân Aoife Síofra Éabha Niamh Zoë Chloé Renée Inés Lucía Sofía María Ana Júlia "
        "Małgorzata Zuzanna Łucja Kateřina Tereza Anežka Réka Zsófia Ayşe Elif Gülşen Anaïs "
        "Maëlle Mélissa"
    ),
}
_ACCENTED_SURNAMES = _words(
    "Ó_Briain Ó_Súilleabháin Mac_Cárthaigh Ní_Bhriain García Fernández López Núñez "
    "Gómez Pérez Sánchez Rodríguez Martínez Jiménez Gonçalves Conceição Araújo Brandão "
    "Wiśniewski Zieliński Lewandowska Wójcik Dąbrowski Kozłowski Dvořák Novák Horváth "
    "Szabó Kovács Tóth Öztürk Çelik Y\u0131ld\u0131z Şahin Doğan Müller Schröder Jäger Lefèvre "
    "Gauthier Fournié Ferrière Crémieux"
)
# Twins are often given look-alike names: the hard negatives for matching.
_TWIN_NAMES: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = (
    (("Alexander", "male"), ("Alexandra", "female")),
    (("Louis", "male"), ("Louise", "female")),
    (("Daniel", "male"), ("Danielle", "female")),
    (("Oliver", "male"), ("Olivia", "female")),
    (("George", "male"), ("Georgia", "female")),
    (("Julian", "male"), ("Julia", "female")),
    (("Christian", "male"), ("Christina", "female")),
    (("Nicholas", "male"), ("Nicola", "female")),
    (("Mario", "male"), ("Maria", "female")),
    (("Samuel", "male"), ("Samantha", "female")),
    (("Francis", "male"), ("Frances", "female")),
    (("Jack", "male"), ("Jake", "male")),
    (("Ella", "female"), ("Ellie", "female")),
    (("Isabella", "female"), ("Isabelle", "female")),
    (("Milo", "male"), ("Mila", "female")),
    (("Eric", "male"), ("Erin", "female")),
    (("Harry", "male"), ("Harvey", "male")),
    (("Leo", "male"), ("Leah", "female")),
)

_AREAS = (
    "B BA BB BD BH BL BN BR BS CB CF CH CM CO CR CT CV CW DA DE DH DL DN DT DY E EC EN EX "
    "GL GU HA HD HG HP HR HU HX IG IP KT L LA LE LN LS LU M ME MK N NE NG NN NP NR NW OL OX "
    "PE PL PO PR RG RH RM S SE SG SK SL SM SN SO SP SR SS ST SW SY TA TF TN TQ TR TS TW UB W "
    "WA WC WD WF WN WR WS WV YO"
)
_POSTCODE_AREAS = _words(_AREAS)
_POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the inward code never uses C I K M O V

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    ch: row[max(0, i - 1) : i] + row[i + 1 : i + 2]
    for row in _KEYBOARD_ROWS
    for i, ch in enumerate(row)
}

MAX_AGE_YEARS = 17


@dataclass(frozen=True, slots=True)
class Child:
    """One child as the person index holds them (the truth).

    ``given_names`` is the first name then any middle name, space separated.
    ``household`` ties siblings together; ``twin_of`` names a twin's NHS number.
    """

    nhs_number: str
    given_names: str
    family_name: str
    birth_date: date
    sex: str  # "male" or "female"
    postcode: str
    household: int
    twin_of: str | None = None


@dataclass(frozen=True, slots=True)
class LaRecord:
    """What an LA's case management system holds for a child: maybe wrong.

    ``nhs_number`` is the number the LA would send: the child's, a wrong one,
    or None (a child not yet traced). ``errors`` names every corruption
    applied, in order; an empty tuple means a faithful copy.
    """

    child: Child
    nhs_number: str | None
    given_name: str
    family_name: str
    birth_date: date | None
    sex: str | None
    postcode: str | None
    errors: tuple[str, ...] = ()

    @property
    def number_is_right(self) -> bool:
        return self.nhs_number == self.child.nhs_number


# --- the population ------------------------------------------------------------------------


def nhs_numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct valid 999-range NHS numbers from one contiguous block, shuffled.

    Real numbers are issued in blocks, so a slip of a digit often gives another
    real child's number: a sparse random sample would make wrong numbers look
    rarer in the index than they are.
    """
    if not 0 <= count <= 800_000:
        raise ValueError("count must be between 0 and 800,000")
    start = rng.randrange(0, 1_000_000 - count * 11 // 10 - 100)
    found: list[str] = []
    n = start
    while len(found) < count:
        nine = f"999{n:06d}"
        digit = check_digit(nine)
        if digit is not None and len(set(nine)) > 1:
            found.append(nine + str(digit))
        n += 1
    rng.shuffle(found)
    return found


def _pick(rng: random.Random, table: tuple[tuple[str, ...], tuple[int, ...]]) -> str:
    return rng.choices(table[0], weights=table[1])[0]


def _given(rng: random.Random, sex: str) -> str:
    if rng.random() < _ACCENTED_SHARE:
        return rng.choice(_ACCENTED_GIVEN[sex])
    if rng.random() < _RARE_GIVEN_SHARE:
        return rng.choice(_RARE_GIVEN[sex])
    return _pick(rng, _BOYS if sex == "male" else _GIRLS)


def _one_surname(rng: random.Random) -> str:
    if rng.random() < _ACCENTED_SHARE:
        return rng.choice(_ACCENTED_SURNAMES).replace("_", " ")
    if rng.random() < _SURNAME_TABLE_SHARE:
        return _pick(rng, _SURNAMES)
    return rng.choice(_SURNAME_HEADS) + rng.choice(_SURNAME_TAILS)


def _surname(rng: random.Random) -> str:
    if rng.random() < 0.06:  # double-barrelled, usually both parents' names
        first, second = _one_surname(rng), _one_surname(rng)
        if names.key(first) != names.key(second) and " " not in first + second:
            return f"{first}-{second}"
    return _one_surname(rng)


def _postcode(rng: random.Random) -> str:
    area = rng.choice(_POSTCODE_AREAS)
    district = rng.randint(1, 20 if len(area) == 2 else 30)
    letters = "".join(rng.choice(_POSTCODE_LETTERS) for _ in range(2))
    return f"{area}{district} {rng.randint(0, 9)}{letters}"


def _birth_date(rng: random.Random, as_of: date) -> date:
    oldest = _years_before(as_of, MAX_AGE_YEARS + 1) + timedelta(days=1)
    return oldest + timedelta(days=rng.randrange((as_of - oldest).days + 1))


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _with_middle(rng: random.Random, first: str, sex: str) -> str:
    if rng.random() < 0.55:
        middle = _given(rng, sex)
        if names.key(middle) != names.key(first):
            return f"{first} {middle}"
    return first


def children(rng: random.Random, count: int, *, as_of: date) -> list[Child]:
    """``count`` children in households, aged 0 to 17 on ``as_of``, in household order."""
    numbers = nhs_numbers(rng, count)
    out: list[Child] = []
    household = 0
    while len(out) < count:
        household += 1
        size = min(count - len(out), rng.choices((1, 2, 3, 4, 5), weights=(42, 33, 16, 6, 3))[0])
        family = _surname(rng)
        postcode = _postcode(rng)
        used: set[str] = set()
        members: list[Child] = []
        # A namesake: this family's first child shares an earlier child's first
        # given name and surname (another family, another birth date).
        donor = rng.choice(out) if out and rng.random() < NAMESAKE_RATE else None
        if donor is not None:
            family = donor.family_name
        while len(members) < size:
            surname = family
            if members and rng.random() < 0.12:  # a half-sibling with another surname
                surname = _surname(rng)
            twins = len(members) + 2 <= size and rng.random() < 0.04
            if members:
                born = members[-1].birth_date - timedelta(days=rng.randint(330, 1900))
                if born < _years_before(as_of, MAX_AGE_YEARS + 1) + timedelta(days=1):
                    born = _birth_date(rng, as_of)
            else:
                born = _birth_date(rng, as_of)
            if donor is not None and not members:
                pair = ((donor.given_names.split(" ")[0], donor.sex),)
            elif twins:
                pair = _twin_names(rng, used)
            else:
                sex = rng.choice(("male", "female"))
                first = _given(rng, sex)
                while names.key(first) in used:
                    first = _given(rng, sex)
                pair = ((first, sex),)
            for i, (first, sex) in enumerate(pair):
                used.add(names.key(first))
                number = numbers[len(out) + len(members)]
                twin = None
                if len(pair) == 2:
                    twin = numbers[len(out) + len(members) + (1 if i == 0 else -1)]
                members.append(
                    Child(
                        nhs_number=number,
                        given_names=_with_middle(rng, first, sex),
                        family_name=surname,
                        birth_date=born,
                        sex=sex,
                        postcode=postcode,
                        household=household,
                        twin_of=twin,
                    )
                )
        out.extend(members)
    return out


def _twin_names(rng: random.Random, used: set[str]) -> tuple[tuple[str, str], ...]:
    if rng.random() < 0.35:
        pair = rng.choice(_TWIN_NAMES)
        if not {names.key(pair[0][0]), names.key(pair[1][0])} & used:
            return pair
    sexes = (rng.choice(("male", "female")), rng.choice(("male", "female")))
    first = _given(rng, sexes[0])
    second = _given(rng, sexes[1])
    while names.key(second) == names.key(first) or names.key(first) in used:
        first, second = _given(rng, sexes[0]), _given(rng, sexes[1])
    return ((first, sexes[0]), (second, sexes[1]))


# --- corrupting a copy ------------------------------------------------------------------------

# (error, weight): how often each kind of error appears among the errors an
# LA record carries. Formatting differences are not errors to a person, but
# they are to a naive matcher, so they are drawn as often as typos.
ERROR_WEIGHTS: dict[str, int] = {
    "typo-given": 12,
    "typo-family": 12,
    "nickname": 10,
    "names-swapped": 3,
    "day-month-transposed": 6,
    "year-off-by-one": 3,
    "missing-birth-date": 3,
    "missing-given": 2,
    "missing-postcode": 6,
    "hyphen-dropped": 4,
    "one-half-only": 4,
    "surname-changed": 4,
    "middle-name-changed": 6,
    "formatting": 10,
    # Issue 11: the ways of writing names the matcher was not built around.
    "middle-name-used": 4,
    "initials": 3,
    "phonetic-spelling": 6,
    "ocr-error": 4,
    "double-barrel-split": 2,
    "double-barrel-joined": 2,
    "double-barrel-shortened": 2,
    "step-parent-surname": 3,
    "accents-garbled": 3,
    "day-slip": 3,
    "year-slip": 2,
}

NAMESAKE_RATE = 0.03
"""The share of children given a namesake: another child elsewhere in the index
with the same first given name and surname (and another birth date)."""

# How many errors a copy carries: most are faithful or have one.
ERROR_COUNTS: dict[int, int] = {0: 55, 1: 30, 2: 12, 3: 3}


def _typo(rng: random.Random, name: str) -> str:
    """One keyboard slip: a neighbouring key, a letter dropped, doubled, or two swapped."""
    letters = [i for i, ch in enumerate(name) if ch.isalpha()]
    if len(letters) < 3:
        return name
    # People rarely get the first letter wrong; keep it in nine cases of ten.
    at = rng.choice(letters[1:] if rng.random() < 0.9 else letters)
    ch = name[at]
    kind = rng.choice(("neighbour", "drop", "double", "swap"))
    if kind == "neighbour" and ch.lower() in _NEIGHBOURS:
        sub = rng.choice(_NEIGHBOURS[ch.lower()])
        return name[:at] + (sub.upper() if ch.isupper() else sub) + name[at + 1 :]
    if kind == "drop":
        return name[:at] + name[at + 1 :]
    if kind == "swap" and at + 1 < len(name) and name[at + 1].isalpha() and name[at + 1] != ch:
        return name[:at] + name[at + 1] + ch + name[at + 2 :]
    return name[:at] + ch + name[at:]


def _ascii(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("\u0131", "i")


def _formatting(rng: random.Random, name: str) -> str:
    """The same name written differently: capitals, no accents, no apostrophe, Mac/Mc."""
    choice = rng.randrange(4)
    if choice == 0:
        return name.upper()
    if choice == 1 and _ascii(name) != name:
        return _ascii(name)
    if choice == 2 and "'" in name:
        return name.replace("'", rng.choice(("", " ", "\u2019")))
    if name.startswith("Mac"):
        return "Mc" + name[3:]
    if name.startswith("Mc"):
        return "Mac" + name[2:]
    return name.lower()


def _title(word: str) -> str:
    return word[:1].upper() + word[1:]


# Spellings that sound the same, as English spelling allows them: (written,
# also written). Applied to one place in a name, matching case.
_SOUNDS_LIKE = (
    ("ph", "f"), ("f", "ph"), ("ck", "k"), ("k", "c"), ("c", "k"), ("ee", "ea"),
    ("ea", "ee"), ("y", "ie"), ("ie", "y"), ("ey", "y"), ("ai", "ay"), ("ay", "ai"),
    ("ou", "ow"), ("z", "s"), ("s", "z"), ("ll", "l"), ("nn", "n"), ("tt", "t"),
    ("mm", "m"), ("l", "ll"), ("n", "nn"), ("t", "tt"), ("i", "y"), ("oh", "o"),
    ("ah", "a"), ("an", "en"), ("en", "an"), ("sh", "ch"), ("x", "ks"),
)  # fmt: skip
# What OCR makes of handwriting and faxes, and fingers of a keyboard.
_MISREAD = (
    ("m", "rn"), ("rn", "m"), ("w", "vv"), ("d", "cl"), ("h", "li"), ("l", "1"),
    ("o", "0"), ("i", "l"), ("e", "c"), ("n", "h"), ("u", "v"), ("s", "5"),
)  # fmt: skip


def _rewrite(rng: random.Random, name: str, table: tuple[tuple[str, str], ...]) -> str | None:
    """``name`` with one spelling from ``table`` replaced after its first letter."""
    lower = name.lower()
    options = [
        (i, old, new)
        for old, new in table
        for i in range(1, len(lower))
        if lower.startswith(old, i)
    ]
    if not options:
        return None
    i, old, new = rng.choice(options)
    if name[i : i + len(old)].isupper():
        new = new.upper()
    return name[:i] + new + name[i + len(old) :]


def _garble(rng: random.Random, name: str) -> str | None:
    """Accents as a system mangles them: UTF-8 read as Windows-1252, or a "?"."""
    if _ascii(name) == name:
        return None
    if rng.random() < 0.6:
        return name.encode("utf-8").decode("cp1252", errors="replace")
    return "".join(ch if _ascii(ch) == ch else "?" for ch in name)


def _digit_slip(rng: random.Random, value: int, width: int) -> int:
    """``value`` with one of its last two digits changed by one (a key beside it)."""
    digits = list(f"{value:0{width}d}")
    at = rng.choice((width - 1, width - 2))
    step = rng.choice((-1, 1))
    digits[at] = str((int(digits[at]) + step) % 10)
    return int("".join(digits))


def _apply(rng: random.Random, error: str, record: LaRecord, as_of: date) -> LaRecord | None:
    """``record`` with one more error, or None when that error cannot apply to it."""
    given, family, born = record.given_name, record.family_name, record.birth_date
    first, *middle = given.split(" ") if given else [""]
    out: LaRecord | None = None
    if error == "typo-given" and len(first) >= 3:
        out = replace(record, given_name=" ".join([_typo(rng, first), *middle]))
    elif error == "typo-family" and len(family) >= 3:
        out = replace(record, family_name=_typo(rng, family))
    elif error == "nickname" and first:
        options = sorted(names.variants_of(names.key(first)))
        if options:
            out = replace(record, given_name=_title(rng.choice(options)))
    elif error == "names-swapped" and given and family:
        out = replace(record, given_name=family, family_name=first)
    elif error == "day-month-transposed" and born is not None and born.day <= 12:
        if born.day != born.month:
            out = replace(record, birth_date=born.replace(month=born.day, day=born.month))
    elif error == "year-off-by-one" and born is not None:
        shifted = _years_before(born, rng.choice((1, -1)))
        if shifted <= as_of:
            out = replace(record, birth_date=shifted)
    elif error == "missing-birth-date" and born is not None:
        out = replace(record, birth_date=None)
    elif error == "missing-given" and given:
        out = replace(record, given_name="")
    elif error == "missing-postcode" and record.postcode:
        out = replace(record, postcode=None)
    elif error == "hyphen-dropped" and "-" in family:
        out = replace(record, family_name=family.replace("-", rng.choice((" ", ""))))
    elif error == "one-half-only" and "-" in family:
        out = replace(record, family_name=rng.choice(family.split("-")))
    elif error == "surname-changed" and family:
        new = _surname(rng)
        if names.key(new) != names.key(family):
            out = replace(record, family_name=new)
    elif error == "middle-name-changed" and first:
        if middle:
            out = replace(record, given_name=first)
        else:
            out = replace(record, given_name=f"{first} {_given(rng, record.child.sex)}")
    elif error == "middle-name-used" and middle:
        out = replace(record, given_name=rng.choice(middle))
    elif error == "initials" and first:
        letters = [w[0].upper() for w in given.split(" ") if w]
        form = rng.choice(("first", "dotted", "all"))
        if form == "first":
            out = replace(record, given_name=letters[0])
        elif form == "dotted":
            out = replace(record, given_name=letters[0] + ".")
        else:
            out = replace(record, given_name=" ".join(letters))
    elif error == "phonetic-spelling":
        if rng.random() < 0.5 and first:
            new_first = _rewrite(rng, first, _SOUNDS_LIKE)
            if new_first and names.key(new_first) != names.key(first):
                out = replace(record, given_name=" ".join([new_first, *middle]))
        elif family:
            new_family = _rewrite(rng, family, _SOUNDS_LIKE)
            if new_family and names.key(new_family) != names.key(family):
                out = replace(record, family_name=new_family)
    elif error == "ocr-error":
        if rng.random() < 0.5 and first:
            new_first = _rewrite(rng, first, _MISREAD)
            if new_first:
                out = replace(record, given_name=" ".join([new_first, *middle]))
        elif family:
            new_family = _rewrite(rng, family, _MISREAD)
            if new_family:
                out = replace(record, family_name=new_family)
    elif error == "double-barrel-split" and "-" in family:
        out = replace(record, family_name=family.replace("-", " "))
    elif error == "double-barrel-joined" and "-" in family:
        a, b = family.split("-", 1)
        out = replace(record, family_name=a + b.lower())
    elif error == "double-barrel-shortened" and "-" in family:
        out = replace(record, family_name=family.split("-")[rng.choice((0, -1))])
    elif error == "step-parent-surname" and family:
        new = _one_surname(rng)
        if names.key(new) != names.key(family):
            out = replace(record, family_name=new)
    elif error == "accents-garbled":
        garbled_family = _garble(rng, family) if family else None
        garbled_first = _garble(rng, first) if first else None
        if garbled_family is not None:
            out = replace(record, family_name=garbled_family)
        elif garbled_first is not None:
            out = replace(record, given_name=" ".join([garbled_first, *middle]))
    elif error == "day-slip" and born is not None:
        day = _digit_slip(rng, born.day, 2)
        with contextlib.suppress(ValueError):
            if 1 <= day <= 31 and day != born.day and born.replace(day=day) <= as_of:
                out = replace(record, birth_date=born.replace(day=day))
    elif error == "year-slip" and born is not None:
        year = _digit_slip(rng, born.year, 4)
        with contextlib.suppress(ValueError):
            if abs(year - born.year) > 1 and born.replace(year=year) <= as_of:
                out = replace(record, birth_date=born.replace(year=year))
    elif error == "formatting":
        if rng.random() < 0.5 and family:
            out = replace(record, family_name=_formatting(rng, family))
        elif first:
            out = replace(record, given_name=" ".join([_formatting(rng, first), *middle]))
    if out is None:
        return None
    return replace(out, errors=(*record.errors, error))


def slipped_number(rng: random.Random, number: str, known: frozenset[str]) -> str | None:
    """A number one body digit away from ``number`` whose check digit still passes.

    Prefers numbers in ``known`` (another child's), as a slip that lands on no
    one is caught before matching (CPR01). None when no such number exists.
    """
    found: list[str] = []
    for pos in range(3, 9):  # the 999 prefix stays
        for digit in "0123456789":
            if digit == number[pos]:
                continue
            nine = number[:pos] + digit + number[pos + 1 : 9]
            check = check_digit(nine)
            if check is not None:
                found.append(nine + str(check))
    if not found:
        return None
    landed = [n for n in found if n in known]
    return rng.choice(landed or found)


def la_record(
    rng: random.Random,
    child: Child,
    *,
    as_of: date,
    errors: int | None = None,
    with_number: bool = True,
    wrong_number: WrongNumber | None = None,
) -> LaRecord:
    """An LA's copy of ``child`` with ``errors`` errors (drawn from ``ERROR_COUNTS`` if None).

    ``wrong_number`` replaces the child's number (see :func:`wrong_number`);
    ``with_number=False`` gives a copy with no number, as sent for tracing.
    """
    number: str | None = None
    if with_number:
        number = child.nhs_number if wrong_number is None else wrong_number.number
    record = LaRecord(
        child=child,
        nhs_number=number,
        given_name=child.given_names,
        family_name=child.family_name,
        birth_date=child.birth_date,
        sex=child.sex,
        postcode=child.postcode,
    )
    if wrong_number is not None and with_number:
        record = replace(record, errors=(f"wrong-number-{wrong_number.kind}",))
    want = errors if errors is not None else _pick_count(rng)
    kinds, weights = tuple(ERROR_WEIGHTS), tuple(ERROR_WEIGHTS.values())
    applied = 0
    for _ in range(want * 10):  # some errors do not apply to every record
        if applied == want:
            break
        changed = _apply(rng, rng.choices(kinds, weights=weights)[0], record, as_of)
        if changed is not None:
            record, applied = changed, applied + 1
    return record


def _pick_count(rng: random.Random) -> int:
    return rng.choices(tuple(ERROR_COUNTS), weights=tuple(ERROR_COUNTS.values()))[0]


class WrongNumber(NamedTuple):
    """A wrong NHS number for a child and how it went wrong: sibling, slip, other-child."""

    number: str
    kind: str


def wrong_number(
    rng: random.Random, child: Child, siblings: Sequence[Child], known: frozenset[str]
) -> WrongNumber:
    """A wrong number an LA might hold for ``child``, and how it went wrong.

    A sibling's number ("sibling", a twin's when there is one: the hardest
    case) half the time when there are siblings, else a digit slip that passes
    the check digit ("slip").
    """
    others = [s for s in siblings if s.nhs_number != child.nhs_number]
    if others and rng.random() < 0.5:
        twin = [s for s in others if s.nhs_number == child.twin_of]
        return WrongNumber((twin or [rng.choice(others)])[0].nhs_number, "sibling")
    slipped = slipped_number(rng, child.nhs_number, known)
    if slipped is None:  # no single digit gives a valid number: practically never
        return WrongNumber(rng.choice(sorted(known - {child.nhs_number})), "other-child")
    return WrongNumber(slipped, "slip")


@dataclass(frozen=True, slots=True)
class Dataset:
    """A person index and LA copies of some of its children, from one seed.

    ``uploads`` carry NHS numbers (some wrong); ``traces`` carry none, and
    include children absent from the index (``Child`` not in ``index``),
    for whom the only right answer is "none".
    """

    seed: int
    as_of: date
    index: tuple[Child, ...]
    uploads: tuple[LaRecord, ...]
    traces: tuple[LaRecord, ...]


def dataset(
    seed: int,
    people: int,
    *,
    as_of: date,
    uploads: int | None = None,
    traces: int | None = None,
    wrong_number_rate: float = 0.05,
    absent_rate: float = 0.05,
) -> Dataset:
    """Everything a matching benchmark or a demo needs, reproducible from ``seed``.

    ``uploads`` and ``traces`` default to half and a quarter of ``people``.
    ``absent_rate`` is the share of traced children who are not in the index.
    """
    rng = random.Random(seed)
    n_uploads = people // 2 if uploads is None else uploads
    n_traces = people // 4 if traces is None else traces
    n_absent = round(n_traces * absent_rate)
    everyone = children(rng, people + n_absent, as_of=as_of)
    absent_ids = set(rng.sample(range(len(everyone)), n_absent))
    index = tuple(c for i, c in enumerate(everyone) if i not in absent_ids)
    absent = [c for i, c in enumerate(everyone) if i in absent_ids]
    known = frozenset(c.nhs_number for c in index)
    households: dict[int, list[Child]] = {}
    for c in index:
        households.setdefault(c.household, []).append(c)

    upload_records = []
    for child in rng.sample(index, min(n_uploads, len(index))):
        wrong = None
        if rng.random() < wrong_number_rate:
            wrong = wrong_number(rng, child, households[child.household], known)
        upload_records.append(la_record(rng, child, as_of=as_of, wrong_number=wrong))

    traced = rng.sample(index, min(n_traces - n_absent, len(index))) + absent
    rng.shuffle(traced)
    trace_records = [la_record(rng, c, as_of=as_of, with_number=False) for c in traced]
    named = Counter(_name_of(c) for c in index)
    return Dataset(
        seed,
        as_of,
        index,
        tuple(_tag_namesake(r, named, known) for r in upload_records),
        tuple(_tag_namesake(r, named, known) for r in trace_records),
    )


def _name_of(child: Child) -> tuple[str, str]:
    return names.key(child.given_names.split(" ")[0]), names.key(child.family_name)


def _tag_namesake(
    record: LaRecord, named: Counter[tuple[str, str]], in_index: frozenset[str]
) -> LaRecord:
    """``record`` tagged ``no-birth-date-namesake`` when it has no birth date and the
    index holds another child of the child's first given name and surname."""
    if record.birth_date is not None:
        return record
    own = 1 if record.child.nhs_number in in_index else 0
    if named[_name_of(record.child)] - own < 1:
        return record
    return replace(record, errors=(*record.errors, "no-birth-date-namesake"))
