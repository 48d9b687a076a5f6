"""Grounding: every sentence of an answer, checked against the documents it claims to come from.

An answer is split into *claims* (its sentences; a citation marker written after the full stop
belongs to the sentence before it; a sentence the answer repeats is one claim). Each claim gets one
status:

- ``quoted``: the model cited it, the quote occurs verbatim in the cited page, lines or section
  (citations.py checks that), and the sentence around the quote supports the claim as below;
- ``supported``: docqa found a passage (a sentence of the documents, or two adjacent ones: see
  passages.py) that holds the claim: at least ``SUPPORT_THRESHOLD`` of its weight, every fact of
  it, and the same polarity;
- ``unsupported``: neither; ``missing`` lists what the closest passage lacks (facts, or "not" when
  it says the opposite) and ``nearest`` is that passage, for the reader to compare;
- ``restates_question``: the sentence only repeats the question (no fact of its own);
- ``not_in_documents``: the sentence says the documents do not say (an honest abstention); a claim
  that the documents lack something whose subject a sentence of them does hold is ``unsupported``;
- ``too_general``: a fact-less generality about the documents ("The document contains several
  sections that provide information…"): nothing a passage could hold or contradict.
The last three are neither support nor failure: they are left out of the counts of both.

*Support is measured one way*: how much of the claim the passage holds, each word (a Snowball stem)
weighted by its rarity in these documents (inverse sentence frequency), so "License" in a licence,
or "Agreement" in a contract, proves nothing, and a passage saying more than the claim is no worse
for it. A heading, or a fragment of fewer than ``MIN_CONTENT_WORDS`` content words (one that is not
a whole sentence stating a fact), never supports a claim. (rapidfuzz's ``token_set_ratio``, the
method before, scores 100 whenever the passage's words are a subset of the claim's, so the one-word
line "License." "supported" any sentence with that word.)

*Facts* are what a sentence can be wrong about while its words still look alike: numbers (with
thousands separators, decimals and the number words one to ninety read as digits), dates (any of
"1 March 2025", "March 1, 2025", "2025-03-01", "01/03/2025" read as the same day), codes (a word
with a digit, or in capitals) and names (runs of capitalised words that are not the sentence's
first word). A claim's facts must all occur in its passage: "45 euros" is not supported by
"EUR 4,500", nor "the law of the European Union" by "the laws of England and Wales". A name the
question asks about, or a document's title ("the Mozilla Public License"), is excused where the
documents hold it. *Polarity*: the claim and the clause of the passage holding most of its words
must agree on negation ("does not grant" is not "grants").

The method and its threshold were chosen on a labelled set of real documents (bench/grounding.py
--set real; the generated set is the second check); the numbers are in the README.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import snowballstemmer
from rapidfuzz import fuzz

from docqa.engine.citations import _MARKER, _QUOTE, extract_citations, squash
from docqa.engine.loops import repeats_itself
from docqa.engine.passages import Passage, passages, section_passages
from docqa.engine.sources import Document, Section

METHOD = "idf"  # what judges the claims of every answer (answers' grounding.method)
SUPPORT_THRESHOLD = 70.0  # coverage of the claim's weight, 0-100; chosen on the real set (bench/grounding.py)
ABSENT_DF = 1.0  # a word no sentence of the documents holds weighs as one in this many sentences
MIN_CONTENT_WORDS = 4  # a passage with fewer never supports a claim
NEAR_SCORE = 50.0  # an unsupported claim this close to a passage, with nothing against it, keeps its answer shown
FAR_SCORE = 30.0  # below this no passage comes near the claim: evidence against it
ABSENT_COVERED = 80.0  # "the documents do not say X" when a sentence holds this much of X: unsupported
STATUSES = ("quoted", "supported", "unsupported", "restates_question", "not_in_documents", "too_general")

def _split(words: str) -> list[str]:
    return words.split()


# -- claims ---------------------------------------------------------------------------------------

_ABBREV = frozenset(_split("p pp e.g i.e no nos inc ltd co mr mrs ms dr st art sec vs cf fig approx para"))
_LEADING_MARKERS = re.compile(r"^\s*(?:(?:" + _MARKER.pattern + r")[\s,;:]*(?:" + _QUOTE + r")?[\s,;:.]*)+")


def split_claims(answer: str) -> list[str]:
    """The sentences of `answer`, each with the citation markers and quotes that go with it."""
    out: list[str] = []
    for line in answer.split("\n"):
        line = re.sub(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+", "", line).strip()
        if line:
            for piece in _sentences(line):
                lead = _LEADING_MARKERS.match(piece)
                if lead and out and lead.group(0).strip():  # `... fee. [p. 1] "quote"`: the sentence before
                    out[-1] = f"{out[-1]} {lead.group(0).strip()}"
                    piece = piece[lead.end():].strip()
                if piece:
                    out.append(piece)
    return out


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    start = depth = 0
    quoted = False
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch in "\"“”":
            quoted = not quoted if ch == '"' else ch == "“"
        elif ch in ".!?。؟" and not depth and not quoted:
            nxt = text[i + 1: i + 2]
            if nxt and not nxt.isspace():
                continue  # 4.5, e.g., file.py
            word = re.search(r"([\w.]+)$", text[start:i])
            if ch == "." and word and word.group(1).casefold() in _ABBREV:
                continue
            rest = text[i + 1:].lstrip()
            if rest and rest[0].islower():
                continue
            pieces.append(text[start: i + 1].strip())
            start = i + 1
    if text[start:].strip():
        pieces.append(text[start:].strip())
    return pieces


# -- facts ----------------------------------------------------------------------------------------

_MONTHS = {m: i + 1 for i, m in enumerate(
    _split("january february march april may june july august september october november december"))}
_MONTHS.update({m[:3]: n for m, n in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MON = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATES = [
    re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b"),
    re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?(?:\s+of)?\s+" + _MON + r",?\s+(?P<y>\d{4})\b", re.I),
    re.compile(r"\b" + _MON + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})\b", re.I),
    re.compile(r"\b(?P<d>\d{1,2})[/.](?P<m>\d{1,2})[/.](?P<y>\d{4})\b"),
    re.compile(r"\b" + _MON + r"\s+(?P<y>\d{4})\b", re.I),
]
_NUMBER = re.compile(r"(?:(?<![\w.-])-)?(?:(?<![\w.])\d{1,3}(?:[,\u202f\u00a0' ]\d{3})+(?:\.\d+)?(?![\w])"
                     r"|(?<![\w])\d+(?:[.,]\d+)?)")  # "-1" keeps its sign
_UNITS = {w: i for i, w in enumerate(
    _split(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen"
    ))}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_split("twenty thirty forty fifty sixty seventy eighty ninety"))}
_NUMBER_WORD = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[-\s](?P<unit>" + "|".join(list(_UNITS)[1:10]) + r"))?"
    r"|(?P<only>" + "|".join(w for w in _UNITS if w != "one") + r"))\b", re.I)
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{2,}(?![\w-])|\b[A-Z]{2,}[A-Z0-9_-]*\b")
# an e-mail address or a URL is a fact like a code: "debian-devel@lists.debian.org" is not "base-passwd@…"
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[a-z][a-z0-9+.-]*://[^\s<>\"')\]]+", re.I)
_CAP = r"(?<![\w'’-])[A-Z][\w'’-]*"
_NAME = re.compile(_CAP + r"(?:\s+(?:(?:of|and|de|la|van|von|du|der|the|&)\s+)?" + _CAP + r")*")
_NOT_NAMES = frozenset(
    _split(
        "i a an the this that these those it its he she they we you his her their our your yes no "
        "not if article section clause schedule annex page line lines document documents agreement "
        "contract"
    ))
_CURRENCY_CODES = frozenset(["EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD"])


@dataclass(frozen=True)
class Facts:
    numbers: frozenset[str]
    dates: frozenset[str]  # "2025-03-01", or "2025-03" for a month
    codes: frozenset[str]  # case-folded
    names: frozenset[str]  # case-folded, spacing squashed

    def all(self) -> list[str]:
        return sorted(self.numbers) + sorted(self.dates) + sorted(self.codes) + sorted(self.names)

    def __bool__(self) -> bool:
        return bool(self.numbers or self.dates or self.codes or self.names)


def _canon_number(raw: str) -> str:
    if raw.startswith("-"):
        return "-" + _canon_number(raw[1:])
    s = re.sub(r"[\u202f\u00a0' ]", "", raw)
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    elif re.fullmatch(r"\d+,\d{1,2}", s):  # 12,5 (decimal comma)
        s = s.replace(",", ".")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s.lstrip("0") or "0"


@functools.lru_cache(maxsize=16384)
def facts(text: str) -> Facts:
    text = unicodedata.normalize("NFKC", text)
    dates: set[str] = set()
    rest = text
    for pattern in _DATES:
        for m in pattern.finditer(rest):
            g = m.groupdict()
            month = _MONTHS[g["mon"].casefold()] if g.get("mon") else int(g["m"])
            if not 1 <= month <= 12:
                continue
            day = int(g["d"]) if g.get("d") else None
            dates.add(f"{int(g['y']):04d}-{month:02d}" + (f"-{day:02d}" if day else ""))
        rest = pattern.sub(" ", rest)
    numbers = {_canon_number(m.group(0)) for m in _NUMBER.finditer(rest)}
    for m in _NUMBER_WORD.finditer(rest):
        if m.group("only"):
            numbers.add(str(_UNITS[m.group("only").casefold()]))
        else:
            numbers.add(str(_TENS[m.group("tens").casefold()] + (_UNITS[m.group("unit").casefold()]
                                                                 if m.group("unit") else 0)))
    codes = {c.casefold() for c in _CODE.findall(rest) if not c.isdigit() and c not in _CURRENCY_CODES}
    codes |= {a.casefold().rstrip(".") for a in _ADDRESS.findall(rest)}
    names: set[str] = set()
    for sentence in re.split(r"(?<=[.!?:;])\s+|\n", text):
        sentence = _MARKER.sub(" ", sentence)
        first = re.match(r"\s*[\"“(]*(\w+)", sentence)
        for m in _NAME.finditer(sentence):
            words = m.group(0).split()
            if first and m.start() <= first.start(1) and words[0] == first.group(1):
                words = words[1:]  # the sentence's first word is capitalised anyway
                while words and words[0].casefold() in {"of", "and", "the", "de", "la", "&"}:
                    words = words[1:]
            if not words or (len(words) == 1 and words[0].casefold() in _NOT_NAMES):
                continue
            if len(words) == 1 and (words[0].isupper() or any(ch.isdigit() for ch in words[0])):
                continue  # a code, counted as one
            names.add(re.sub(r"['’]s$", "", " ".join(words)).casefold())
    names = {n for n in names if not all(w in _MONTHS for w in n.split())}
    return Facts(frozenset(numbers), frozenset(dates), frozenset(codes), frozenset(names))


def missing_facts(claim: Facts, passage_text: str, passage: Facts | None = None) -> list[str]:
    """The facts of a claim that the passage does not hold."""
    have = passage or facts(passage_text)
    flat = _flat(passage_text)
    out = [n for n in sorted(claim.numbers) if n not in have.numbers]
    for d in sorted(claim.dates):
        if not any(h == d or h.startswith(d + "-") for h in have.dates):
            out.append(d)
    out += [c for c in sorted(claim.codes) if c not in have.codes and f"{c}" not in flat]
    out += [n for n in sorted(claim.names) if not re.search(r"(?<!\w)" + re.escape(squash(n)) + r"(?!\w)", flat)]
    return out


# -- passages -------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    _split(
        "the a an of to in on and or is are was were be been by for with as at that this it its "
        "from shall will must may can any all each which who whom what when where there their they "
        "he she his her not no do does has have had than then so such also per"
    ))


_MARKS = re.compile(r"[\u064b-\u065f\u0670\u0640]")  # Arabic short vowels and tatweel: not word breaks


@functools.lru_cache(maxsize=65536)
def words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(_MARKS.sub("", text.casefold())) if w not in _STOP)


@functools.lru_cache(maxsize=65536)
def _flat(text: str) -> str:
    return " " + squash(text) + " "



# -- words, their stems and their weight ------------------------------------------------------------

_ENGLISH = snowballstemmer.stemmer("english")
_ARABIC = snowballstemmer.stemmer("arabic")
_ARABIC_LETTER = re.compile(r"[\u0600-\u06ff]")
# the function words of an answer beyond _STOP (words() keeps them: the search and the bench read it)
_MORE_STOP = frozenset(_split(
    "if you your yours we our us i me my them him into onto upon under over about out up only but would should "
    "could might being both how why while through after before between other these those some own same very "
    "just more most whether either every"
)) | frozenset(_split("في من على إلى الى عن أن ان إن هذا هذه ذلك تلك التي الذي الذين و أو او ثم كما هو هي هم مع كل "
                      "بعض قد ما إذا اذا عند"))
_NEGATION = re.compile(
    r"(?<!\w)(?:not|no|never|none|nor|neither|nothing|nobody|cannot|without|unless|non)(?!\w)|n['’]t(?!\w)"
    r"|(?<!\w)(?:لا|ليس|ليست|لم|لن|غير|بدون|دون)(?!\w)", re.I)
# negation words that negate nothing the claim could be about
_NOT_NEGATION = re.compile(
    r"\b(?:(?:but|and)\s+)?not\s+limited\s+to\b|\bwithout\s+limitation\b|\bnot\s+only\b|\bwhether\s+or\s+not\b"
    r"|\b(?:no|not)\s+(?:later|more|less|fewer|earlier)\s+than\b|\b(?:no\s+one|nobody|nothing|none)\s+other\s+than\b",
    re.I)  # "no one other than the steward" says "only the steward"
_CONTRACTION = re.compile(r"(?:ca)?n['’]t\b", re.I)
PARITY = True  # clause parity of negations decides first (False: the word-scope check alone; for the bench)
RARE_SHARE = 0.05  # a word in at most this share of the sentences (or three) is specific
GATES = True  # the bound and "only" gates (False: without them; for the bench)
NEGATION_SCOPE = 2  # a negation reaches the next two content words of its clause
# what an answer says about the documents themselves, not about what they say
_META = frozenset(_split(
    "document documents text texts file files passage passages readme page pages says say said states stated "
    "state mentions mentioned mention describes described describe explains explained explain according "
    "specifies specified specify indicates indicated indicate notes noted refers referred lists listed "
    "also provides information details detail"))


def _stem_word(word: str) -> str:
    return (_ARABIC if _ARABIC_LETTER.search(word) else _ENGLISH).stemWord(word)


_SAME = {"euro": "eur", "euros": "eur", "€": "eur", "dollar": "usd", "dollars": "usd", "pound": "gbp",
         "pounds": "gbp"}
# irregular English participles and past forms, which a Snowball stem leaves apart ("written" / "writing")
_SAME.update({w: base for base, forms in (
    ("write", "written wrote"), ("give", "given gave"), ("make", "made"), ("take", "taken took"), ("do", "done did"),
    ("know", "known knew"), ("show", "shown"), ("choose", "chosen chose"), ("hold", "held"), ("pay", "paid"),
    ("sell", "sold"), ("tell", "told"), ("bring", "brought"), ("buy", "bought"), ("send", "sent"), ("keep", "kept"),
    ("leave", "left"), ("begin", "begun began"), ("break", "broken broke"), ("speak", "spoken spoke"),
    ("find", "found"), ("get", "got gotten"), ("build", "built"), ("mean", "meant"), ("forbid", "forbidden forbade"),
    ("grant", "granted"), ("bear", "borne"), ("lose", "lost"), ("spend", "spent"), ("teach", "taught"),
    ("think", "thought"), ("seek", "sought"), ("lead", "led"), ("run", "ran"), ("become", "became"),
) for w in forms.split()})


@functools.lru_cache(maxsize=65536)
def terms(text: str) -> tuple[str, ...]:
    """The stems of the content words of `text` (Snowball: English, or Arabic for Arabic words), in order;
    numbers are left to the facts (missing_facts reads "4,500" and "4500" alike)."""
    out: list[str] = []
    for w in words(_CAMEL.sub(r"\1 \2", text)):
        if w in _MORE_STOP or w.isdigit():
            continue
        out.append(_stem_word(_SAME.get(w, w)))
        if "_" in w:  # KILO_VERSION: kilo, version
            out += [_stem_word(part) for part in w.split("_") if part and part not in _STOP and not part.isdigit()]
    return tuple(out)


_CAMEL = re.compile(r"([a-z])([A-Z])")  # getWindowSize: get Window Size


def _holds(term: str, have: frozenset[str]) -> bool:
    """Whether a passage's stems hold `term`: the same stem, or one of five letters or more that the other
    extends by at most three ("month" / "monthli", "distribut" / "distributor")."""
    if term in have:
        return True
    if len(term) < 5:
        return False
    return any(abs(len(h) - len(term)) <= 3 and len(h) >= 5 and (h.startswith(term) or term.startswith(h))
               for h in have)


def content_words(text: str) -> int:
    """How many content words `text` has: under four, a passage never supports a claim on its own."""
    return sum(1 for w in words(text) if w not in _MORE_STOP)


def can_support(p: Passage) -> bool:
    """Whether a passage may support a claim on its own: never a heading; a passage of four content words or
    more; or a shorter one that is a whole sentence stating a fact ("The pass key is 52817."), which is no
    fragment of a wrapped line ("License.", "If You" hold no fact; "GNU GENERAL PUBLIC LICENSE" is a heading)."""
    if p.heading:
        return False
    n = content_words(p.text)
    if n >= MIN_CONTENT_WORDS:
        return True
    text = p.text.strip()
    return n >= 2 and text[-1:] in ".!?。؟" and (text[:1].isupper() or text[:1].isdigit()) and bool(facts(text))


def negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


_SCOPE_TOKEN = re.compile(r"\w+|[.;!?:,]", re.UNICODE)


# what reads as a negation but states no polarity of the claim: the value "no" in quotes (a keyword), and
# the yes/no that opens an answer ("No. The licence does not grant…" says "not" once)
_QUOTED_NEGATION = re.compile(r"[\"'`“‘]\s*(?:no|not|none|never)\s*[\"'`”’]", re.I)
_ANSWER_WORD = re.compile(r"^\s*(?:no|yes)\s*[.,!;:]+\s*", re.I)
_FAILS_TO = re.compile(r"\bfail(?:s|ed|ing)?\s+to\b", re.I)  # "fails to notify" says "does not notify"
_CONDITION = frozenset(["unless"])  # "unless and until": a condition, not a polarity of the words after it
POLARITY_VARIANT = "v2"  # "v1": without the opening No., "fails to" and "unless" rules (for the bench)


@functools.lru_cache(maxsize=65536)
def _polarity_text(text: str) -> str:
    text = _QUOTED_NEGATION.sub(" ", _MARKS.sub("", text))
    if POLARITY_VARIANT != "v1":
        text = _ANSWER_WORD.sub("", text)
        text = _FAILS_TO.sub(" not ", text)
    return _CONTRACTION.sub(" not", _NOT_NEGATION.sub(" ", text.casefold()))


@functools.lru_cache(maxsize=65536)
def negated_terms(text: str) -> frozenset[str]:
    """The stems that a negation in `text` reaches: the next NEGATION_SCOPE content words after "not",
    "no", "never", "without", "non"…, before a comma or the clause's end ("You may not use any uids" ->
    use, uid)."""
    out: set[str] = set()
    left = 0
    for tok in _SCOPE_TOKEN.findall(_polarity_text(text)):
        if tok in ".;!?:,":
            left = 0
        elif _NEGATION.fullmatch(tok) and not (POLARITY_VARIANT != "v1" and tok in _CONDITION):
            left = NEGATION_SCOPE
        elif left and tok not in _STOP and tok not in _MORE_STOP and not tok.isdigit():
            out.add(_stem_word(_SAME.get(tok, tok)))
            left -= 1
    return frozenset(out)


def negations(text: str) -> int:
    """How many negations `text` states (those negated_terms reads; "neither … nor" is one; "non" negates
    one word, not the clause)."""
    toks = _SCOPE_TOKEN.findall(_polarity_text(text))
    n = sum(1 for tok in toks if _NEGATION.fullmatch(tok) and tok not in _CONDITION and tok != "non")
    return n - sum(1 for tok in toks if tok == "nor") if "neither" in toks else n


_CLAUSE_BREAK = re.compile(r"[;:]|(?<=[.!?])\s+|,\s*(?=(?:so|but|because|although|though|while|whereas|however|"
                           r"since|yet)\b)", re.I)


def clauses(text: str) -> list[str]:
    """The clauses of a sentence, for polarity: split at ";", ":", a sentence end, and a comma before "but",
    "because", "although", "so"… (a comma in a list splits nothing)."""
    return [c for c in _CLAUSE_BREAK.split(text) if c and c.strip()]


_UNIT_AFTER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)?)\s*(?:\(\d+\)\s*)?([^\W\d_]{3,})", re.UNICODE)


def _number_units(text: str) -> dict[str, set[str]]:
    """unit stem -> the numbers written before it ("40 seconds", "thirty (30) days"), number words read
    as digits."""
    out: dict[str, set[str]] = {}
    for m in _UNIT_AFTER.finditer(_numerals(text)):
        word = m.group(2).casefold()
        if word in _STOP or word in _MORE_STOP:
            continue
        out.setdefault(_stem_word(word), set()).add(_canon_number(m.group(1)))
    return out


def _numerals(text: str) -> str:
    def digit(m: re.Match[str]) -> str:
        if m.group("only"):
            return str(_UNITS[m.group("only").casefold()])
        return str(_TENS[m.group("tens").casefold()] + (_UNITS[m.group("unit").casefold()] if m.group("unit") else 0))
    return _NUMBER_WORD.sub(digit, text)


def unit_clash(claim: str, passage: str) -> list[str]:
    """The claim's "N unit" that the passage states with another number for the same unit: "40 minutes"
    where the passage has "five minutes" (and "40 seconds")."""
    theirs = _number_units(passage)
    return [f"{n} {u}" for u, ns in _number_units(claim).items() for n in ns
            if u in theirs and n not in theirs[u]]


_BOUND = re.compile(
    r"\b(?P<cmp>at\s+least|at\s+most|no\s+more\s+than|no\s+less\s+than|not\s+more\s+than|not\s+less\s+than|"
    r"more\s+than|less\s+than|fewer\s+than|over|under|up\s+to|a\s+minimum\s+of|a\s+maximum\s+of|"
    r"minimum(?:\s+of)?|maximum(?:\s+of)?|within|exactly)\s+(?:the\s+)?(?P<n>\d+(?:[.,]\d+)?)(?!\w)", re.I)
_BOUND_KIND = {"at least": ">=", "no less than": ">=", "not less than": ">=", "a minimum of": ">=", "minimum": ">=",
               "minimum of": ">=", "at most": "<=", "no more than": "<=", "not more than": "<=", "up to": "<=",
               "a maximum of": "<=", "maximum": "<=", "maximum of": "<=", "within": "<=", "more than": ">",
               "over": ">", "less than": "<", "fewer than": "<", "under": "<", "exactly": "="}


def _bounds(text: str) -> dict[str, set[str]]:
    """number -> the bounds written before it ("at least three years": 3 -> {">="}), number words read as
    digits."""
    out: dict[str, set[str]] = {}
    for m in _BOUND.finditer(_numerals(text)):
        kind = _BOUND_KIND.get(" ".join(m.group("cmp").casefold().split()))
        if kind:
            out.setdefault(_canon_number(m.group("n")), set()).add(kind)
    return out


def bound_clash(claim: str, passage: str) -> list[str]:
    """The claim's bounded numbers that the passage bounds the other way: "at most three years" where the
    passage says "at least three years" (both must write a bound; a bare number is left to the facts)."""
    theirs = _bounds(passage)
    return [f"{k} {n}" for n, kinds in _bounds(claim).items() for k in sorted(kinds)
            if theirs.get(n) and k not in theirs[n]]


_ONLY = re.compile(r"(?<!not )\b(?:only|solely|exclusively)\b(?!\s+(?:if|when|where|to\s+the\s+extent)\b)", re.I)
_EXCLUSIVE = re.compile(r"\b(?:only|solely|exclusively|sole|alone|other\s+than|except|unless|but\s+not|"
                        r"no\s+one|nobody|nothing\s+else|limited\s+to)\b", re.I)
ONLY_MISSING = "only (the passage does not say it is the only one)"


def exclusivity_clash(claim: str, passage: str) -> bool:
    """Whether the claim says "only" (one thing and no other) where the passage says nothing exclusive:
    "git-jump only works with vim" from "This script was written and tested with vim"."""
    return bool(_ONLY.search(claim)) and not _EXCLUSIVE.search(passage)


def polarity_clash(claim: str, claim_terms: Sequence[str], passage: str, passage_terms: frozenset[str]) -> bool:
    """Whether the claim and the passage disagree on negation about a word they share: "the licence
    does not grant patent rights" against "the licence grants patent rights", or the other way round."""
    mine, theirs = negated_terms(claim), negated_terms(passage)
    if not mine and not theirs:
        return False
    by_terms = any(_holds(t, passage_terms) and (t in mine) != _holds(t, theirs) for t in claim_terms)
    if not PARITY:
        return by_terms
    if _sentence_ends(passage):
        return by_terms  # two sentences: which one the claim's negation belongs with is not known
    mine_n = negations(claim) % 2
    held = [c for c in clauses(passage) if any(_holds(t, frozenset(terms(c))) for t in claim_terms)]
    if held and all(negations(c) % 2 == mine_n for c in held):
        # "does not waive" / "No … rights … are waived": one negation each, the same polarity, whatever
        # words each negation reaches; only a word negated by "non" must agree ("non transferable")
        mine_non, theirs_non = _non_terms(claim), _non_terms(passage)
        return any(_holds(t, passage_terms) and (t in mine_non) != _holds(t, theirs_non) for t in claim_terms)
    return by_terms


_NON = re.compile(r"\bnon[\s-]+(\w+)", re.I)


def _non_terms(text: str) -> frozenset[str]:
    """The stems of the words "non" negates ("non transferable", "non-exclusive")."""
    return frozenset(_stem_word(w.casefold()) for w in _NON.findall(text))


def _verbatim(claim: str, passage: str) -> bool:
    """Whether the passage holds the claim's content words in a row, as written (a copied sentence)."""
    a, b = terms(claim), terms(passage)
    return bool(a) and any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1))


def _sentence_ends(text: str) -> list[str]:
    return [m for m in re.findall(r"[.!?](?=\s+[A-Z*\-])", text)]


def similarity(claim: str, passage: str, method: str = "token_set") -> float:
    """0-100 by a word measure alone (bench/grounding.py compares them; the grounder weighs words by
    their rarity instead, Grounder.coverage): token_set (rapidfuzz's token_set_ratio, the old method:
    100 whenever the passage's words are a subset of the claim's), jaccard, or coverage (the share of
    the claim's words the passage holds)."""
    a, b = words(claim), words(passage)
    if not a or not b:
        return 0.0
    if method == "token_set":
        return float(fuzz.token_set_ratio(" ".join(a), " ".join(b)))
    if method == "jaccard":
        sa, sb = set(a), set(b)
        return 100.0 * len(sa & sb) / len(sa | sb)
    if method == "coverage":
        sb = set(b)
        return 100.0 * sum(w in sb for w in set(a)) / len(set(a))
    raise ValueError(f"unknown similarity method {method!r}")


# -- claims' statuses -----------------------------------------------------------------------------

_ABSTAIN = re.compile(
    r"\b(?:(?:documents?|text|contract|evidence|context|passages?|sources?|it|license|licence|agreement|readme|"
    r"file|script|page|code|program|manual|faq|guide)\s+"
    r"(?:does|do|did)\s*(?:n[o']t)\s+"
    r"(?:(?:seem|appear)\s+to\s+)?(?:explicitly\s+)?"
    r"(?:say|mention|state|specify|contain|include|provide|give|tell|indicate|define|list|address|discuss|cover|"
    r"name|describe|explain)"
    r"|(?:^|\s)(?:لا|لم)\s+(?:يذكر|يحدد|يقول|يوضح|يشير|تذكر|تحدد)"
    r"|(?:not|never)\s+(?:mentioned|specified|stated|found|given|provided|included|defined|listed|present|"
    r"available|addressed|discussed|covered)\b(?:\s+\w+){0,3}\s+(?:in|by)\s+the\s+"
    r"(?:documents?|text|contract|evidence|passages?|context|license|licence|agreement)"
    r"|no\s+(?:information|mention|evidence|details?)\s+(?:about|on|of|regarding|in)"
    r"|(?:cannot|can't|could\s+not|couldn't)\s+(?:find|determine|answer|tell|say)"
    r"|is\s+not\s+(?:in|part\s+of)\s+the\s+(?:documents?|text|contract)"
    r"|^\s*none\.?\s*$)", re.I)
_ABSTAIN_WORDS = _META | frozenset(_split(
    "not no never does do did seem seems appear appears explicitly contain contains include includes provide "
    "provides give tell define address discuss cover found given included defined present available addressed "
    "discussed covered mention any information evidence details context cannot can't find determine answer "
    "license licence agreement contract readme file script page code program manual faq guide name names "
    "describe explain anything"))
_GENERAL = re.compile(
    r"^\s*(?:the|this|that|it)\s+(?:\w+\s+){0,2}?(?:document|text|file|license|licence|agreement|contract|readme|"
    r"guide|manual|page|section|passage|program|code|script)?\s*(?:also\s+)?(?:contains?|provides?|describes?|"
    r"discusses|covers?|outlines?|explains?|includes?|gives?|offers?|lists?|talks\s+about|deals\s+with|is\s+about|"
    r"focuses\s+on|presents?|details|mentions?|addresses|has)\b", re.I)
_GENERIC = frozenset(_split(
    "information several various sections section terms provisions conditions details aspects things content "
    "contents overview topics topic important different many number some range set parts part kinds types way "
    "ways how use using apply applying applies related relevant general specific certain additional further "
    "instructions guidance points matters issues"))
_DOCUMENT_WORDS = frozenset(_split("provide provides license licence agreement contract document documents"))


def abstains(text: str) -> bool:
    """Whether the sentence says the documents do not answer (`not_in_documents`)."""
    return bool(_ABSTAIN.search(text))


def general(text: str, own: Facts) -> bool:
    """A fact-less generality about the documents ("The document contains several sections that provide
    information on how to apply the terms"): nothing in it that a passage could hold or contradict."""
    if own or not _GENERAL.match(text):
        return False
    rest = [w for w in words(_GENERAL.sub("", text)) if w not in _MORE_STOP | _META | _GENERIC | _DOCUMENT_WORDS]
    return len(rest) <= 1


@dataclass
class Claim:
    text: str
    status: str
    passage: dict[str, Any] | None = None  # text + location (+ chunk) of what supports it
    score: float | None = None  # how much of the claim the passage holds, 0-100 (100 for a verified quote)
    missing: list[str] = field(default_factory=list)  # facts no close passage holds
    nearest: dict[str, Any] | None = None  # unsupported: the closest passage, for comparison
    judge: dict[str, Any] | None = None  # judge.Verdict's dict, when a judge was asked (judge.apply)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["judge"] is None:
            del out["judge"]  # a claim no judge was asked about keeps the shape it always had
        return out


def _passage_dict(p: Passage) -> dict[str, Any]:
    return {"text": p.text, **p.location()}


_Scored = tuple[float, Passage, list[str]]  # (score 0-100, passage, what it lacks: facts, "not")
COMMON_MISSING = "(only words common in these documents)"
NEGATION_MISSING = "not (the passage says the opposite)"
REPEATS_MISSING = "(the sentence repeats itself)"


class Grounder:
    """Grounds the claims of answers over one set of sources (passages built once).

    `method`: "idf" (docqa's: how much of the claim, weighted by each word's rarity in these
    documents, the passage holds) or, for the bench, one of similarity()'s word measures."""

    def __init__(self, sources: Iterable[tuple[Document, Sequence[Section]]], method: str = "idf",
                 threshold: float = SUPPORT_THRESHOLD) -> None:
        self.sources = [(d, list(s)) for d, s in sources]
        self.passages = passages(self.sources)
        self._facts = [facts(p.text) for p in self.passages]
        self._terms = [frozenset(terms(p.text)) for p in self.passages]
        self._eligible = [can_support(p) for p in self.passages]
        singles = [i for i, p in enumerate(self.passages) if not p.pair and not p.heading]
        self._n = max(1, len(singles))
        self._df: dict[str, int] = {}
        for i in singles:
            for t in self._terms[i]:
                self._df[t] = self._df.get(t, 0) + 1
        self._postings: dict[str, list[int]] = {}
        for i, ts in enumerate(self._terms):
            if self._eligible[i]:
                for t in ts:
                    self._postings.setdefault(t, []).append(i)
        self._titles = _titles(self.sources, self.passages)
        self.method = method
        self.threshold = threshold
        self.absent_df = ABSENT_DF
        self._index: _Index | None = None  # search's, built at its first use
        self._single: list[Passage] = []
        self._fragments: str | None = None  # the flattened text of the passages that may not support

    # -- weights and coverage -------------------------------------------------------------------------

    def weight(self, term: str) -> float:
        """A word's weight: its inverse document frequency over the documents' sentences (a word in half
        of them, "license" in a licence, weighs little; a word in none weighs as one in a single one)."""
        return math.log(1.0 + self._n / (self._df.get(term) or self.absent_df))

    def coverage(self, claim_terms: Sequence[str], passage_terms: frozenset[str]) -> float:
        """0-100: the share of the claim's weight that the passage holds (one way: the passage may say more)."""
        total = sum(self.weight(t) for t in claim_terms)
        if not total:
            return 0.0
        return 100.0 * sum(self.weight(t) for t in claim_terms if _holds(t, passage_terms)) / total

    def score(self, plain: str, claim_terms: Sequence[str], passage: Passage, passage_terms: frozenset[str]) -> float:
        if self.method == "idf":
            return self.coverage(claim_terms, passage_terms)
        return similarity(plain, passage.text, self.method)

    # -- search (the lines shown next to the question) --------------------------------------------------

    def search(self, question: str, k: int = 3) -> Found:
        """The `k` sentences that best hold the question's words (BM25 over single sentences), among those
        holding at least one *rare* word of it (in at most a tenth of the sentences, or three): a word
        every clause has ("agreement") finds nothing on its own. Also the question's words that no
        sentence holds at all. What the prompt shows the model before the question (prompts.search_text).
        Headings and fragments (under four content words) are not lines to show."""
        terms_ = question_terms(question)
        if not terms_ or k <= 0:
            return Found([], [])
        index, df, mean_len = self._search_index()
        n = len(index)
        rare = {t for t in terms_ if 0 < df.get(t, 0) <= self._rare_max()}
        scored: list[tuple[float, int]] = []
        for i, (tf, length) in enumerate(index):
            if not rare.intersection(tf) or not self._shown[i]:
                continue
            score = 0.0
            for t in terms_:
                f = tf.get(t, 0)
                if f:
                    idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    score += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * length / mean_len))  # k1 1.2, b 0.75
            scored.append((score, i))
        best = [self._single[i] for _, i in sorted(scored, key=lambda si: (-si[0], si[1]))[:k]]
        return Found(best, [w for t, w in terms_.items() if not df.get(t)])

    def _unknown_subject(self, plain: str, own: Facts, question: str) -> list[str]:
        """The question's words this claim repeats that no sentence of the documents holds, when they are
        most of the question's words it repeats: "the pass code of the blue vault is 71615" is about a
        thing the documents never name, however well "the pass key is 71615" matches its other words.
        A claim with no fact of its own rests on its words alone, so for it a word in more than a tenth
        of the sentences ("agreement", in a contract) does not count as known: "the guarantor of this
        agreement is the customer" is about a guarantor. A claim with a fact that repeats one unknown
        word beside a known one ("the lease ends on 1 May", where the documents say "expires") is left
        to the similarity and its facts."""
        terms_ = question_terms(question)
        if not terms_:
            return []
        df = self._search_index()[1]
        mine = {stem(w) for w in words(plain)} & terms_.keys()
        if not own:
            mine = {t for t in mine if df.get(t, 0) <= self._rare_max()}
        unknown = [terms_[t] for t in sorted(mine) if not df.get(t)]
        return unknown if 2 * len(unknown) > len(mine) else []

    def answers(self, claims: Sequence[Claim], question: str, said: str = "") -> bool:
        """Whether an answer with these claims is shown (`withholds` finds no strong evidence against it)."""
        return self.withholds(claims, question, said) is None

    def withholds(self, claims: Sequence[Claim], question: str, said: str = "") -> str | None:
        """Why an answer must be withheld, or None to show it. Withheld only on strong evidence against
        it: none of its claims is grounded (quoted, supported, or from what the user said earlier) or
        close to a passage that does not contradict it (a paraphrase the words do not reach), and one of
        them contradicts the documents (a number, date or name the close passage has otherwise, the
        opposite negation, a subject the documents never name) or nothing in them comes near it. Also
        when its grounded claims only copy text unrelated to a question about something the documents
        never name. An answer that abstains, or has nothing to check, is shown as it is. `said`: what
        the user said in the conversation's earlier turns ("Your name is Zorblat" answers from it)."""
        checked = [c for c in claims if c.status in ("quoted", "supported", "unsupported")]
        if not checked or any(c.status == "not_in_documents" for c in claims):
            return None
        grounded = [c for c in checked if c.status in ("quoted", "supported") or _from(c, said)]
        terms_ = question_terms(question)
        if grounded:
            if not terms_ or any(terms_.keys() & {stem(w) for w in words(c.text + " " + (c.passage or {}).get(
                    "text", ""))} for c in grounded):
                return None
            df = self._search_index()[1]
            if any(df.get(t) for t in terms_):
                return None  # grounded, and the documents do speak of the question's words: shown
            return "what it quotes from the documents is not about the question, which names nothing they hold"
        if any(c.status == "unsupported" and not c.missing and (c.score or 0) >= NEAR_SCORE for c in checked):
            return None  # close to a passage in other words, with nothing against it: shown
        # a negation clash alone is too often a scope the words misread (measured on the real set): not strong
        against = [c for c in checked if (c.missing and c.missing != [NEGATION_MISSING]
                                          and not self._stated_elsewhere(c.missing))
                   or (c.score or 0) < FAR_SCORE]
        if not against:
            return None
        c = against[0]
        if c.missing:
            return f'"{_clip(c.text, 120)}" does not match the documents ({", ".join(c.missing[:4])})'
        return f'nothing in the documents comes near "{_clip(c.text, 120)}"'

    def _stated_elsewhere(self, missing: Sequence[str]) -> bool:
        """Whether every missing fact is written in a heading, title, table line or other fragment of the
        documents (a passage that may not support a claim, so no supported one holds it): "Version 3,
        29 June 2007" under the title, "mysql 64001 mysql-server" in a table. That is no evidence
        against the answer, so it does not withhold it (the claim stays unsupported)."""
        facts_ = [m for m in missing if m not in (NEGATION_MISSING, COMMON_MISSING, ONLY_MISSING, REPEATS_MISSING)]
        if not facts_ or len(facts_) != len(missing):
            return False
        if self._fragments is None:
            self._fragments = " ".join(_flat(p.text) for p, ok in zip(self.passages, self._eligible, strict=True)
                                       if not ok and not p.pair)
        return all(re.search(r"(?<!\w)" + re.escape(squash(m)) + r"(?!\w)", self._fragments) for m in facts_)

    def _rare_max(self) -> int:
        """The most sentences a *rare* word is in: a tenth of them, or three."""
        return max(3, len(self._search_index()[0]) // 10)

    def _search_index(self) -> _Index:
        """Per single sentence its stems' counts and length; each stem's sentence count; the mean length."""
        if self._index is None:
            self._single = [p for p in self.passages if not p.pair]
            self._shown = [can_support(p) for p in self._single]
            index: list[tuple[dict[str, int], int]] = []
            df: dict[str, int] = {}
            for p in self._single:
                tf: dict[str, int] = {}
                for t in map(stem, words(p.text)):
                    tf[t] = tf.get(t, 0) + 1
                index.append((tf, max(1, sum(tf.values()))))
                for t in tf:
                    df[t] = df.get(t, 0) + 1
            mean_len = sum(length for _, length in index) / len(index) if index else 1.0
            self._index = (index, df, mean_len)
        return self._index

    # -- claims ---------------------------------------------------------------------------------------

    def ground(self, answer: str, question: str = "", evidence: Sequence[Passage] = ()) -> list[Claim]:
        """The claims of `answer`, each once (a sentence the answer repeats is listed at its first place)."""
        out: list[Claim] = []
        seen: set[str] = set()
        for text in split_claims(answer):
            key = " ".join(words(_MARKER.sub(" ", text)))
            if key and key in seen:
                continue
            seen.add(key)
            c = self.claim(text, question, evidence)
            if c is not None:
                out.append(c)
        return out

    def claim(self, text: str, question: str = "", evidence: Sequence[Passage] = ()) -> Claim | None:
        plain = _MARKER.sub(" ", text).strip()
        own = facts(plain)
        content = words(plain)
        if not own and len(content) < 2:
            return None  # "Yes.", "1." : nothing to check
        if repeats_itself(plain):
            return Claim(text, "unsupported", missing=[REPEATS_MISSING])
        if abstains(plain):
            return self._abstention(text, plain)
        if question and _restates(plain, own, question):
            return Claim(text, "restates_question")
        if general(plain, own):
            return Claim(text, "too_general")
        unknown = self._unknown_subject(plain, own, question)
        mine = [t for t in dict.fromkeys(terms(plain)) if t not in self._meta_terms()]
        excused = self._excused_names(own, question)
        if excused:
            named = {t for n in excused for t in terms(n)}
            mine = [t for t in mine if t not in named] or mine
        quoted = self._quoted(text, plain, own, mine, excused)
        if quoted is not None:
            if unknown:
                return Claim(text, "unsupported", score=quoted.score, missing=unknown, nearest=quoted.passage)
            return quoted
        best = self._best(plain, own, mine, excused, list(evidence), pairs=False) if evidence else None
        if best is None or best[0] < self.threshold or best[2]:
            whole = self._best(plain, own, mine, excused, None)
            if whole is not None and (best is None or _better(whole, best)):
                best = whole
        if best is None:
            return Claim(text, "unsupported", missing=own.all())
        score, passage, missing = best
        if unknown and missing == [COMMON_MISSING]:
            missing = []  # the subject no sentence names says more than "only common words"
        missing = missing + [w for w in unknown if w not in missing]
        if score >= self.threshold and not missing:
            return Claim(text, "supported", _passage_dict(passage), round(score, 1))
        return Claim(text, "unsupported", score=round(score, 1), missing=missing, nearest=_passage_dict(passage))

    def _meta_terms(self) -> frozenset[str]:
        return _META_TERMS

    def _excused_names(self, own: Facts, question: str) -> frozenset[str]:
        """The claim's names, codes and numbers that a passage need not hold: the question's own (the claim
        repeats what is asked about) and the documents' titles ("the Mozilla Public License 2.0", "GNU"),
        where the documents hold them."""
        if not own:
            return frozenset()
        asked = _flat(question)
        context = facts(question + "\n" + "\n".join(self._titles))
        out = {n for n in own.numbers if n in context.numbers} | {c for c in own.codes if c in context.codes}
        # a title is kept flattened (lower case), so its codes ("GNU") are found as words of it
        out |= {c for c in own.codes if any(re.search(r"(?<!\w)" + re.escape(squash(c)) + r"(?!\w)", t)
                                            for t in self._titles)}
        for n in own.names:
            key = squash(n)
            pat = r"(?<!\w)" + re.escape(key) + r"(?!\w)"
            if (re.search(pat, asked) or any(re.search(pat, t) for t in self._titles)) and \
                    any(re.search(pat, _flat(p.text)) for p in self.passages if not p.pair):
                out.add(n)
        return frozenset(out)

    def _check(self, plain: str, own: Facts, mine: Sequence[str], excused: frozenset[str], p: Passage,
               f: Facts, pterms: frozenset[str]) -> _Scored:
        score = self.score(plain, mine, p, pterms)
        missing = [m for m in missing_facts(own, p.text, f) if m not in excused] if own else []
        if self.method == "idf" and not missing:
            missing = unit_clash(plain, p.text) + (bound_clash(plain, p.text) if GATES else [])
            if not missing and polarity_clash(plain, mine, p.text, pterms):
                missing = [NEGATION_MISSING]
            if not missing and GATES and exclusivity_clash(plain, p.text):
                missing = [ONLY_MISSING]
            if not missing and RARE_SHARE and not self._specific(own, mine, pterms, excused) \
                    and not _verbatim(plain, p.text):
                missing = [COMMON_MISSING]
        return score, p, missing

    def _specific(self, own: Facts, mine: Sequence[str], pterms: frozenset[str], excused: frozenset[str]) -> bool:
        """Whether the passage holds something specific of the claim: a fact of it (not one the question or
        a title gives), or one of its words that is rare in these documents (in at most RARE_SHARE of the
        sentences, or three). A claim that meets its passage only in the documents' common words ("The
        document contains a list of the licenses granted to you") says nothing the passage could prove."""
        if own and set(own.all()) - excused:
            return True
        rare = max(3.0, RARE_SHARE * self._n)
        return any(self._df.get(t, 0) <= rare and _holds(t, pterms) for t in mine)

    def _best(self, plain: str, own: Facts, mine: Sequence[str], excused: frozenset[str],
              cands: list[Passage] | None, pairs: bool = True) -> _Scored | None:
        """The best passage holding all the claim's facts (and its polarity); failing that, the closest one
        (with what it lacks). `cands`: the chunked evidence, or None for every passage of the documents
        sharing a word with the claim. Headings and fragments (under four content words) are never
        candidates; two adjacent sentences only when no single one is enough."""
        if cands is not None:
            pool = [(p, facts(p.text), frozenset(terms(p.text))) for p in cands
                    if can_support(p)]
        else:
            ids: set[int] = set()
            for t in mine:
                ids.update(self._postings.get(t, ()))
            if not mine:  # a claim of facts alone ("EUR 4,500."): the passages holding them
                ids = {i for i, e in enumerate(self._eligible) if e}
            pool = [(self.passages[i], self._facts[i], self._terms[i]) for i in sorted(ids)]
        best_ok: _Scored | None = None
        best_any: _Scored | None = None
        for p, f, pt in sorted(pool, key=lambda x: x[0].pair):
            if p.pair and (not pairs or (best_ok is not None and best_ok[0] >= self.threshold)):
                break  # a single sentence does
            if p.pair and best_any is not None and best_any[0] >= 100.0:
                break
            scored = self._check(plain, own, mine, excused, p, f, pt)
            score, _, missing = scored
            if not missing and (best_ok is None or score > best_ok[0] or (
                    score == best_ok[0] and len(p.text) < len(best_ok[1].text))):
                best_ok = scored
            if best_any is None or score > best_any[0] or (score == best_any[0] and not missing and best_any[2]):
                best_any = scored
        if best_ok is not None and best_ok[0] >= self.threshold:
            return best_ok
        return best_any

    def _abstention(self, text: str, plain: str) -> Claim:
        """A claim that the documents lack something, checked like any other: when a sentence of the
        documents holds its subject (every rarer word of it), it is `unsupported` with that sentence as
        the nearest; otherwise `not_in_documents`."""
        subject = [t for t in dict.fromkeys(terms(plain)) if t not in _ABSTAIN_TERMS]
        rare = [t for t in subject if self._df.get(t, 0) and self._df[t] <= max(3, self._n // 10)]
        if not subject or not rare:
            return Claim(text, "not_in_documents")
        ids: set[int] = set()
        for t in rare:
            ids.update(i for i in self._postings.get(t, ()) if not self.passages[i].pair)
        best: tuple[float, int] | None = None
        for i in ids:
            s = self.coverage(subject, self._terms[i])
            if best is None or s > best[0]:
                best = (s, i)
        if best is not None and best[0] >= ABSENT_COVERED:
            return Claim(text, "unsupported", score=round(best[0], 1), nearest=_passage_dict(self.passages[best[1]]))
        return Claim(text, "not_in_documents")

    def _quoted(self, text: str, plain: str, own: Facts, mine: Sequence[str],
                excused: frozenset[str]) -> Claim | None:
        """`quoted` when a verified citation's passage (the sentence around its quote) holds the claim as
        a supported claim's passage must: its facts, its polarity, enough of its words, and no heading
        or fragment."""
        if not _MARKER.search(text):
            return None
        for cit in extract_citations(text, self.sources):
            if not cit.verified or not cit.quote:
                continue
            around = self._around(cit.quote, cit.document_id, cit.page, cit.line_start, cit.line_end)
            if around is None or not can_support(around):
                continue
            score, _, missing = self._check(plain, own, mine, excused, around, facts(around.text),
                                            frozenset(terms(around.text)))
            if not missing and score >= self.threshold:
                return Claim(text, "quoted", {**_passage_dict(around), "quote": cit.quote}, 100.0)
        return None

    def _around(self, quote: str, document_id: str | None, page: int | None, start: int | None,
                end: int | None) -> Passage | None:
        """The shortest passage in the cited place that contains the quote."""
        q = squash(quote)
        found: Passage | None = None
        for p in self.passages:
            if p.document_id != document_id or (page is not None and not (
                    p.page is not None and p.page <= page <= (p.page_end or p.page))):
                continue
            if start is not None and (p.line_start is None or p.line_end is None
                                      or p.line_end < start or p.line_start > (end or start)):
                continue
            if q in squash(p.text) and (found is None or len(p.text) < len(found.text)):
                found = p
        if found is None:  # a quote that spans more than two sentences: the cited place itself
            for doc, sections in self.sources:
                for sec in sections:
                    if doc.id == document_id and q in squash(sec.text) and (page is None or sec.page == page):
                        return Passage(doc.id, doc.filename, sec.page, sec.path, sec.line_start, sec.line_end,
                                       quote)
        return found


def _titles(sources: Sequence[tuple[Document, Sequence[Section]]], ps: Sequence[Passage]) -> list[str]:
    """Each document's title: a heading among its first five sentences (none for a document without)."""
    out: list[str] = []
    for doc, _ in sources:
        mine = [p for p in ps if p.document_id == doc.id and not p.pair]
        first = next((p for p in mine[:5] if p.heading), None)
        if first is not None:
            out.append(_flat(first.text))
    return out


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


_META_TERMS = frozenset(_stem_word(w) for w in _META)
_ABSTAIN_TERMS = frozenset(_stem_word(w) for w in _ABSTAIN_WORDS | _MORE_STOP)


# -- search: the lines that hold the question's words ---------------------------------------------

# words of a question that ask rather than name what is asked about
_ASKING = frozenset(_split(
    "how many much why whose name names named say says said tell told give given mean means meant "
    "does did document documents text according please list state stated find summarize summarise summary "
    "overview describe explain i me my mine we us our you your yours"))


def stem(word: str) -> str:
    """A crude English stem (plural, past and -ing endings), enough for a question's word to meet the
    document's ("signed" / "signs" / "signing" -> "sign")."""
    if len(word) > 5 and word.endswith("ies"):
        return word[:-3] + "y"
    for end in ("ing", "ed", "es", "s"):
        if len(word) > len(end) + 3 and word.endswith(end):
            return word[: -len(end)]
    return word


def question_terms(question: str) -> dict[str, str]:
    """stem -> the question's word, for the words that name what the question is about."""
    return {stem(w): w for w in words(question) if w not in _ASKING and len(w) > 1}


_Index = tuple[list[tuple[dict[str, int], int]], dict[str, int], float]  # Grounder._search_index()


@dataclass
class Found:
    """What `Grounder.search` found: the passages holding the question's rarer words, best first,
    and the question's words no passage holds."""

    passages: list[Passage]
    absent: list[str]


def marker(p: dict[str, Any]) -> str:
    """The citation marker of a passage's place: [p. N], [file:Ln-Lm] or [file]."""
    if p.get("page") is not None:
        return f"[p. {p['page']}]"
    if p.get("line_start") is None:
        return f"[{p.get('path') or p.get('filename')}]"
    lines = f"L{p['line_start']}" + (f"-L{p['line_end']}" if p.get("line_end") not in (None, p["line_start"]) else "")
    return f"[{p.get('path') or p.get('filename')}:{lines}]"


def _from(claim: Claim, said: str) -> bool:
    """Whether every fact of the claim is in what the user said (and it has one)."""
    own = facts(_MARKER.sub(" ", claim.text))
    return bool(said) and bool(own) and not missing_facts(own, said)


def _better(a: tuple[float, Passage, list[str]], b: tuple[float, Passage, list[str]]) -> bool:
    """Whether candidate a beats b: holding every fact first, then the score."""
    return (not a[2], a[0]) > (not b[2], b[0])


def _restates(plain: str, own: Facts, question: str) -> bool:
    """A sentence with no fact the question lacks, whose words nearly all come from the question."""
    q = facts(question)
    if own.numbers - q.numbers or own.dates - q.dates or own.codes - q.codes or own.names - q.names:
        return False
    mine = set(words(plain)) - _ABOUT_QUESTION
    return bool(mine) and len(mine & set(words(question))) / len(mine) >= 0.8


_ABOUT_QUESTION = frozenset(_split("you your asked ask asking question about regarding answer want know"))


def summary(claims: Sequence[Claim]) -> dict[str, int]:
    """Counts per status, plus `grounded` (quoted + supported) and `checked` (those that count)."""
    counts = {s: 0 for s in STATUSES}
    for c in claims:
        counts[c.status] += 1
    counts["grounded"] = counts["quoted"] + counts["supported"]
    counts["checked"] = counts["grounded"] + counts["unsupported"]
    return counts


def note(claims: Sequence[Claim]) -> str | None:
    """The sentence an answer's notes carry when some of its claims have no support."""
    n = sum(c.status == "unsupported" for c in claims)
    if not n:
        return None
    total = sum(c.status in ("quoted", "supported", "unsupported") for c in claims)
    return (f"{n} of {total} statement(s) in this answer could not be found in the documents; "
            "check them before relying on them (see claims).")


def citations(claims: Sequence[Claim]) -> list[dict[str, Any]]:
    """Citations (citations.Citation's shape, origin "matched") of the passages that ground the claims,
    each once: what an answer that cites nothing itself shows as its sources."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for c in claims:
        p = c.passage
        if c.status not in ("quoted", "supported") or not p:
            continue
        key = (p.get("document_id"), p.get("page"), p.get("path"), p.get("line_start"), p["text"])
        if key in seen:
            continue
        seen.add(key)
        out.append({
            "document_id": p.get("document_id"), "filename": p.get("filename"), "page": p.get("page"),
            "path": p.get("path"), "line_start": p.get("line_start"), "line_end": p.get("line_end"),
            "quote": p.get("quote") or p["text"], "verified": True, "marker": marker(p), "origin": "matched",
        })
    return out


__all__ = ["Claim", "Facts", "Found", "Grounder", "Passage", "abstains", "citations", "facts", "marker", "note",
           "section_passages", "split_claims", "summary", "terms"]
