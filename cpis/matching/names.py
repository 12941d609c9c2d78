"""Name normalisation, Jaro-Winkler similarity and a small table of given-name variants.

Local authorities and the person index type the same child's name in different
ways: capitals, accents dropped or kept, "O'Neill" or "O Neill", "McDonald" or
"MacDonald", "Smith-Jones" or "Smith Jones", "Tom" for "Thomas". Everything here
turns those spellings into comparable keys so that ``demographics`` can decide
how strongly two names agree. Pure functions over ``str``; no I/O, stdlib only.

A name normalises to *tokens* (words, lower case, ASCII where the script allows)
and a *key* (the tokens run together), so that hyphens, spaces and apostrophes
never decide whether two names are the same. Accents that a system garbled on
the way (UTF-8 read as Windows-1252: "GarcÃ­a"; or a "?" for a letter it could
not show: "Garc?a") are repaired or dropped first (:func:`repair`).

:func:`sound` is a phonetic key (spellings that sound alike: Aisha/Ayesha,
Sean/Shaun/Seán, Philips/Fillips, Mohammed/Muhammad) for blocking and for a
"sounds the same" grade in ``demographics``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

# Apostrophes join ("O'Neill" -> "oneill"); every other non-letter separates.
_APOSTROPHES = frozenset("'\u2019\u2018\u02bc`\u00b4")

# Letters that NFKD leaves alone but that people routinely type as plain ASCII.
_FOLD = {
    "\u00f8": "o",  # ø
    "\u00e6": "ae",  # æ
    "\u0153": "oe",  # œ
    "\u0142": "l",  # ł
    "\u0111": "d",  # đ
    "\u00f0": "d",  # ð
    "\u00fe": "th",  # þ
    "\u0131": "i",  # dotless i
}

# Tokens that are spelled two ways for the same name part.
_TOKEN_ALIASES = {"st": "saint", "ste": "sainte"}

# Surname particles: sharing one of these says nothing about being the same
# family ("Van Dyke" and "Van Damme"), so they never count as a partial match.
PARTICLES = frozenset(
    {
        "al", "ap", "bin", "bint", "da", "das", "de", "del", "della", "den", "der",
        "di", "do", "dos", "du", "el", "ibn", "la", "le", "mc", "o", "saint",
        "sainte", "ten", "ter", "van", "von",
    }
)  # fmt: skip


# Digits that OCR and typists put for letters.
_DIGIT_LETTERS = str.maketrans("01580", "olsbo")
# Letter groups OCR reads for one another (handwriting, faxes): folded for comparison.
_MISREADS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def misread(word: str) -> str:
    """``word`` with letter groups OCR confuses folded to one form ("rn" and "m",
    "vv" and "w", "cl" and "d"), so that two readings of one name compare equal."""
    for group, letter in _MISREADS:
        word = word.replace(group, letter)
    return word


def _fold_char(ch: str) -> str:
    return _FOLD.get(ch, ch)


# Lead bytes of UTF-8 sequences for Latin letters, as Windows-1252 shows them:
# "Ã" (C3) starts é, á, ñ..., "Å" (C5) starts ł, ś, ş..., "Ä" (C4) ć, ę...
_MOJIBAKE_LEADS = frozenset("\u00c2\u00c3\u00c4\u00c5")
# What a system puts for a letter it cannot show: the letter is lost.
_LOST_LETTER = frozenset("?\ufffd")


def repair(name: str) -> str:
    """``name`` with UTF-8 that was decoded as Windows-1252 (or Latin-1) put right,
    and lost letters ("?", U+FFFD) dropped; anything else unchanged.

    Only a string that re-encodes to valid UTF-8 is repaired, so a real "Ã" in a
    name (rare in the UK, but Portuguese has it) survives unless it is followed
    by exactly the bytes a garbled accent would leave.
    """
    if any(ch in _MOJIBAKE_LEADS for ch in name):
        for codec in ("cp1252", "latin-1"):
            try:
                name = name.encode(codec).decode("utf-8")
                break
            except UnicodeError:
                continue
    if any(ch in _LOST_LETTER for ch in name):
        name = "".join(ch for ch in name if ch not in _LOST_LETTER)
    return name


@lru_cache(maxsize=65536)  # bounded: index loads feed it every distinct name
def tokens(name: str) -> tuple[str, ...]:
    """The words of ``name``, case- and accent-folded, with "Mac" spelled "Mc".

    "Mac"/"Mc" are folded together because the same family is recorded both
    ways ("MacDonald"/"McDonald"). Folding every token that starts with "mac"
    could only join names that differ by "a" after a leading "Mc", which is the
    point. Never raises: anything that is not a non-empty string gives ``()``.
    """
    if not isinstance(name, str) or not name:
        return ()
    decomposed = unicodedata.normalize("NFKD", repair(name).casefold())
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch) or ch in _APOSTROPHES:
            continue
        folded = _fold_char(ch)
        out.append(folded if folded.isalnum() else " ")
    words = []
    for word in "".join(out).split():
        if not word.isalpha() and not word.isdigit():
            # A digit inside a name is a misread letter (OCR, or a slip): "O1iver".
            word = word.translate(_DIGIT_LETTERS)
        word = _TOKEN_ALIASES.get(word, word)
        if word.startswith("mac"):
            word = "mc" + word[3:]
        words.append(word)
    return tuple(words)


def key(name: str) -> str:
    """The tokens run together: "Smith-Jones", "Smith Jones", "SMITH JONES" agree."""
    return "".join(tokens(name))


def significant(words: Iterable[str]) -> frozenset[str]:
    """The words of a surname that identify a family (particles removed)."""
    return frozenset(w for w in words if w not in PARTICLES)


# Spellings of one sound, longest first within each starting letter, applied
# left to right by ``sound``. Built for British and Irish names and the names
# of the communities in ``bench/synthetic.py``; not a standard algorithm
# (Soundex keeps too little: Smith/Sneed; Double Metaphone needs a package in a
# module that is stdlib only), but the same idea as NYSIIS: fold the spellings
# of a sound, drop vowels after the first letter, collapse repeats.
_SOUNDS: tuple[tuple[str, str], ...] = (
    ("tch", "c"), ("sch", "sk"), ("chr", "kr"), ("ch", "c"), ("sh", "s"),
    ("ph", "f"), ("gh", ""), ("ck", "k"), ("cc", "k"), ("th", "t"), ("dt", "t"),
    ("dg", "j"), ("ce", "s"), ("ci", "s"), ("cy", "s"), ("c", "k"), ("q", "k"),
    ("x", "ks"), ("z", "s"), ("d", "t"), ("mb", "m"), ("wr", "r"), ("kn", "n"),
)  # fmt: skip
_SOUND_FIRST = {"kn": "n", "gn": "n", "pn": "n", "ps": "s", "wr": "r", "wh": "w", "x": "s"}
_SOUND_VOWELS = frozenset("aeiouyhw")


@lru_cache(maxsize=65536)
def sound(word: str) -> str:
    """A phonetic key for one normalised name word (a ``tokens`` word): spellings
    that sound alike share it (Aisha/Ayesha "as", Sean/Shaun "sn", Catherine/
    Katherine "ktrn", Thompson/Thomson "tmsn"). The first letter is kept as a
    letter (a vowel stays that vowel: Amy "am" and Emma "em" differ), then
    consonant sounds follow with vowels, h, w and y dropped and repeats
    collapsed. Empty for an empty word."""
    if not word:
        return ""
    for prefix, to in _SOUND_FIRST.items():
        if word.startswith(prefix):
            word = to + word[len(prefix) :]
            break
    out: list[str] = []
    i = 0
    while i < len(word):
        for spelling, to in _SOUNDS:
            if word.startswith(spelling, i):
                out.append(to)
                i += len(spelling)
                break
        else:
            out.append(word[i])
            i += 1
    folded = "".join(out) or word[0]
    # "ce"/"ci" folded the vowel in: Celia -> "sla", the first letter still first.
    first, rest = folded[0], folded[1:]
    key = [first]
    for ch in rest:
        if ch in _SOUND_VOWELS or ch == key[-1]:
            continue
        key.append(ch)
    # "mps" sounds as "ms" (Thompson/Thomson), "nk" sometimes as "ngk".
    return "".join(key).replace("mps", "ms").replace("mpt", "mt")


def _jaro_ordered(s1: str, s2: str) -> float:
    len1, len2 = len(s1), len(s2)
    if len1 == 0 or len2 == 0:
        return 0.0
    window = max(max(len1, len2) // 2 - 1, 0)
    matched2 = [False] * len2
    chars1: list[str] = []
    for i, ch in enumerate(s1):
        lo, hi = max(0, i - window), min(len2, i + window + 1)
        for j in range(lo, hi):
            if not matched2[j] and s2[j] == ch:
                matched2[j] = True
                chars1.append(ch)
                break
    m = len(chars1)
    if m == 0:
        return 0.0
    chars2 = [s2[j] for j in range(len2) if matched2[j]]
    half_transpositions = sum(a != b for a, b in zip(chars1, chars2, strict=True))
    t = half_transpositions / 2
    return (m / len1 + m / len2 + (m - t) / m) / 3


def jaro_winkler(a: str, b: str, *, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity in [0, 1] (1 = identical), symmetric in its arguments.

    The Winkler boost (up to four common leading characters) suits names,
    where typos cluster at the end. The boost is applied only above a Jaro of
    0.7, as Winkler did, so that a shared initial cannot lift two unrelated
    names. Greedy Jaro matching can differ by argument order in rare cases, so
    the arguments are put in a canonical order: compare(a, b) must equal
    compare(b, a) or a decision could depend on which side is "the LA".
    """
    if a == b:
        return 1.0 if a else 0.0
    s1, s2 = sorted((a, b), key=lambda s: (len(s), s))
    jaro = _jaro_ordered(s1, s2)
    if jaro <= 0.7:
        return jaro
    prefix = 0
    for c1, c2 in zip(s1[:4], s2[:4], strict=False):
        if c1 != c2:
            break
        prefix += 1
    return min(1.0, jaro + prefix * prefix_scale * (1.0 - jaro))


# Each group is one set of names that one person may be recorded under. Two
# names are variants when some group holds both: "Alex" is in the Alexander and
# the Alexandra groups, so it is a variant of each, but Alexander and Alexandra
# never share a group, so they are never variants of each other (they may be
# twins). Keep groups small and uncontroversial: every entry widens "match".
_VARIANT_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "alexander alex alec alek sandy xander",
        "alexandra alex alexa lexi lexie sandy",
        "samuel sam sammy",
        "samantha sam sammie sammy",
        "joanne joanna jo",
        "josephine jo josie",
        "joseph joe joey",
        "william will bill billy willie",
        "robert rob bob bobby robbie bert",
        "katherine catherine kathryn katharine kate katie kat cathy kathy kitty",
        "elizabeth liz lizzie lizzy beth betty eliza libby",
        "thomas tom tommy",
        "michael mike mikey mick mickey",
        "james jim jimmy jamie",
        "daniel dan danny",
        "christopher chris kit",
        "christine christina chris chrissie tina",
        "nicholas nick nicky",
        "nicola nikki",
        "charles charlie chas chuck",
        "charlotte charlie lottie lotte",
        "eleanor elinor ellie nell nellie",
        "madison maddie maddy",
        "madeleine madeline maddie maddy",
        "john jack johnny",
        "jonathan jon jonny",
        "benjamin ben benji benny",
        "edward ed eddie ted teddy ned",
        "richard rich rick ricky dick",
        "anthony tony ant",
        "andrew andy drew",
        "matthew matt matty",
        "joshua josh",
        "zachary zach zack",
        "oliver olly ollie",
        "harry henry hal",
        "frederick freddie freddy fred",
        "alfred alfie alf",
        "archibald archie",
        "theodore theo teddy",
        "margaret maggie meg peggy",
        "rebecca becky becca",
        "jessica jess jessie",
        "victoria vicky tori",
        "abigail abbie abby",
        "isabella isabelle isabel izzy bella",
        "anne ann annie",
        "hannah hanna",
        "mohammed mohammad muhammad muhammed mohamed mohamad",
        "stephen steven steve stevie",
        "gabriel gabe",
        "gabriella gabrielle gabby",
        "patrick pat paddy",
        "patricia pat patsy trish",
        "susan sue susie",
        "deborah debbie debra deb",
        "jennifer jenny jen",
        "amelia millie milly",
        "emily em emmy",
        "sophie sophia",
    )
)


@lru_cache(maxsize=4096)  # per word; the variant groups are few
def _groups_of(word: str) -> frozenset[int]:
    return frozenset(i for i, group in enumerate(_VARIANT_GROUPS) if word in group)


def are_variants(a: str, b: str) -> bool:
    """True when one normalised given name is a known variant or nickname of the other."""
    if not a or not b or a == b:
        return False
    return bool(_groups_of(a) & _groups_of(b))


def variants_of(word: str) -> frozenset[str]:
    """Every known variant of a normalised given name (itself excluded), for
    generating test data that agrees with :func:`are_variants`."""
    found: set[str] = set()
    for i in _groups_of(word):
        found |= _VARIANT_GROUPS[i]
    found.discard(word)
    return frozenset(found)


# Names close in spelling that are different names (usually a boy's and a
# girl's), which Jaro-Winkler alone would call a typo. Twins are given names
# like these, so they must never count as the same given name.
_DISTINCT_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(pair.split())
    for pair in (
        "alexander alexandra",
        "francis frances",
        "christian christina",
        "nicholas nicola",
        "dominic dominique",
        "frederick frederica",
        "george georgia",
        "georgie georgia",
        "oliver olivia",
        "adrian adriana",
        "julian julia",
        "jesse jessie",
        "marcus marcia",
        "luca lucas",
        "ryan rhian",
        "jean joan",
        "jon joan",
    )
)

# Endings that turn one given name into another, typically the feminine form
# (Louis/Louise, Paul/Paula, Daniel/Danielle, Joseph/Josephine).
_GENDERED_ENDINGS = ("a", "e", "ie", "la", "le", "lla", "lle", "ne", "ine", "ina", "ette")
_VOWELS = frozenset("aeiouy")


def are_distinct_forms(a: str, b: str) -> bool:
    """True when two close spellings are known to be different given names.

    Used to stop a high Jaro-Winkler score from joining twins such as
    Louis/Louise or Mario/Maria. Errs towards "distinct": a real typo that
    falls here only downgrades a match to "possible".
    """
    if a == b or not a or not b:
        return False
    if frozenset((a, b)) in _DISTINCT_PAIRS:
        return True
    short, long_ = sorted((a, b), key=lambda s: (len(s), s))
    ending = long_[len(short) :]
    # The other form grows from a consonant (Louis/Louise, Paul/Paula); a name
    # cut short after a vowel (Amelia/Ameli, Archie/Archi) or a doubled last
    # letter (Evie/Eviee) is a slip.
    if (
        long_.startswith(short)
        and ending in _GENDERED_ENDINGS
        and short[-1] not in _VOWELS
        and ending != short[-1]
    ):
        return True
    # Mario/Maria, Antonio/Antonia: same stem, different final vowel ("y" is
    # not one here: Holly/Hollu is a slip of the finger).
    vowels = _VOWELS - {"y"}
    return len(a) == len(b) >= 3 and a[:-1] == b[:-1] and a[-1] in vowels and b[-1] in vowels


_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_BESIDE = {
    ch: frozenset(row[max(0, i - 1) : i] + row[i + 1 : i + 2])
    for row in _KEYBOARD_ROWS
    for i, ch in enumerate(row)
}


def within_one_edit(a: str, b: str, *, slips_only: bool = False) -> bool:
    """True when ``a`` and ``b`` differ by one keystroke: a letter changed, added,
    dropped, or two neighbours swapped (Damerau-Levenshtein distance 1).

    Jaro-Winkler is harsh on short names (Ethan/Ethsn 0.89), where this is not.
    ``slips_only`` narrows it to what a finger does but a parent does not:
    two letters swapped, or a letter changed for the key beside it and not a
    vowel for a vowel. Short names one letter apart are often both names
    (Milo/Mila, Eric/Erin, Jade/Jake); Ella/Elka is a slip.
    """
    if a == b:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        i = diffs[0]
        if len(diffs) == 2:
            return diffs[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
        if len(diffs) != 1:
            return False
        if not slips_only:
            return True
        vowels = a[i] in _VOWELS and b[i] in _VOWELS
        return b[i] in _BESIDE.get(a[i], frozenset()) and not vowels
    if slips_only:
        return False
    short, long_ = sorted((a, b), key=len)
    if len(long_) - len(short) != 1:
        return False
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]
