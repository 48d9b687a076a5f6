"""Grounding: every sentence of an answer, checked against the documents it claims to come from.

An answer is split into *claims* (its sentences; a citation marker written after the full stop
belongs to the sentence before it). Each claim gets one status:

- ``quoted``: the model cited it and the quote occurs verbatim in the cited page, lines or
  section (citations.py checks that), and the passage around the quote holds the claim's facts;
- ``supported``: docqa found a passage (one sentence of a section, or two adjacent ones) that
  holds every fact of the claim and scores at least ``SUPPORT_THRESHOLD``;
- ``unsupported``: neither; ``missing`` lists the claim's facts that no close passage holds and
  ``nearest`` is the closest passage, for the reader to compare;
- ``restates_question``: the sentence only repeats the question (no fact of its own);
- ``not_in_documents``: the sentence says the documents do not say (an honest abstention).
The last two are neither support nor failure: they are left out of the counts of both.

*Facts* are what a sentence can be wrong about while its words still look alike: numbers (with
thousands separators, decimals and the number words one to ninety read as digits), dates (any of
"1 March 2025", "March 1, 2025", "2025-03-01", "01/03/2025" read as the same day), codes (a word
with a digit, or in capitals) and names (runs of capitalised words that are not the sentence's
first word). A claim's facts must all occur in its passage: "45 euros" is not supported by
"EUR 4,500", nor "the law of the European Union" by "the laws of England and Wales".

The similarity itself is rapidfuzz's ``token_set_ratio`` on case-folded words without punctuation,
chosen over word-overlap (Jaccard, what produced one-fragment "sources" before) and BM25 by the
precision and recall each reaches on a generated, labelled set (bench/grounding.py writes
bench/results/grounding.json; the numbers are in the README).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rapidfuzz import fuzz

from docqa.engine.citations import _MARKER, _QUOTE, extract_citations, squash
from docqa.engine.sources import Document, Section

SUPPORT_THRESHOLD = 60.0  # token_set_ratio, 0-100; chosen on the labelled set (bench/grounding.py)
STATUSES = ("quoted", "supported", "unsupported", "restates_question", "not_in_documents")

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
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:[,\u202f\u00a0' ]\d{3})+(?:\.\d+)?(?![\w])|(?<![\w])\d+(?:[.,]\d+)?")
_UNITS = {w: i for i, w in enumerate(
    _split(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen"
    ))}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_split("twenty thirty forty fifty sixty seventy eighty ninety"))}
_NUMBER_WORD = re.compile(
    r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[-\s](?P<unit>" + "|".join(list(_UNITS)[1:10]) + r"))?"
    r"|(?P<only>" + "|".join(_UNITS) + r"))\b", re.I)
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{2,}(?![\w-])|\b[A-Z]{2,}[A-Z0-9_-]*\b")
_CAP = r"[A-Z][\w'’-]*"
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
            names.add(" ".join(words).casefold())
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


@functools.lru_cache(maxsize=65536)
def words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(text.casefold()) if w not in _STOP)


@functools.lru_cache(maxsize=65536)
def _flat(text: str) -> str:
    return " " + squash(text) + " "


@dataclass
class Passage:
    """A sentence (or two adjacent ones) of a section, with where it is."""

    document_id: str | None
    filename: str | None
    page: int | None
    path: str | None
    line_start: int | None
    line_end: int | None
    text: str
    chunk: int | None = None  # chunked mode: the chunk whose map step quoted it
    pair: bool = False  # two adjacent sentences: tried only when no single sentence holds the facts

    def location(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("text", "pair")}


def passages(sources: Iterable[tuple[Document, Sequence[Section]]]) -> list[Passage]:
    out: list[Passage] = []
    for doc, sections in sources:
        for sec in sections:
            out += section_passages(doc.id, doc.filename, sec)
    return out


_CUT_AFTER = re.compile(r"(?:\d|\b(?:p|no|e\.g|i\.e|inc|ltd|mr|dr|art|sec))\.$", re.I)
_SENT = re.compile(r"[^.!?。؟\n]+(?:[.!?。؟]+|\n|$)")


def section_passages(document_id: str | None, filename: str | None, sec: Section) -> list[Passage]:
    """Each sentence of the section, and each pair of adjacent sentences, with their lines."""
    spans: list[tuple[int, int]] = []
    for m in _SENT.finditer(sec.text):
        a, b = m.start(), m.end()
        if sec.text[a:b].strip():
            before = sec.text[spans[-1][0]:spans[-1][1]].strip() if spans else ""
            if before and _CUT_AFTER.search(before) and sec.text[a:a + 1].isdigit():
                spans[-1] = (spans[-1][0], b)  # "4.5" or "No. 7" cut in two
            else:
                spans.append((a, b))
    out: list[Passage] = []
    path = sec.path or (filename if sec.page is None else None)

    def make(a: int, b: int, pair: bool = False) -> Passage:
        lead = len(sec.text[a:b]) - len(sec.text[a:b].lstrip())
        text = sec.text[a:b].strip()
        line = (sec.line_start or 1) + sec.text[:a + lead].count("\n") if sec.line_start is not None else None
        last = line + text.count("\n") if line is not None else None
        return Passage(document_id, filename, sec.page, path if sec.page is None else sec.path, line, last, text,
                       pair=pair)

    for i, (a, b) in enumerate(spans):
        out.append(make(a, b))
        if i + 1 < len(spans):
            out.append(make(a, spans[i + 1][1], pair=True))
    return out


# -- scoring --------------------------------------------------------------------------------------


def similarity(claim: str, passage: str, method: str = "token_set") -> float:
    """0-100: how much of the claim's wording the passage holds (see the module docstring)."""
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
    r"\b(?:(?:documents?|text|contract|evidence|context|passages?|sources?|it)\s+(?:does|do|did)\s*(?:n[o']t)\s+"
    r"(?:(?:seem|appear)\s+to\s+)?"
    r"(?:say|mention|state|specify|contain|include|provide|give|tell|indicate|define|list)"
    r"|(?:not|never)\s+(?:mentioned|specified|stated|found|given|provided|included|defined|listed|present|"
    r"available)\b(?:\s+\w+){0,3}\s+(?:in|by)\s+the\s+(?:documents?|text|contract|evidence|passages?|context)"
    r"|no\s+(?:information|mention|evidence|details?)\s+(?:about|on|of|regarding|in)"
    r"|(?:cannot|can't|could\s+not|couldn't)\s+(?:find|determine|answer|tell|say)"
    r"|is\s+not\s+(?:in|part\s+of)\s+the\s+(?:documents?|text|contract)"
    r"|^\s*none\.?\s*$)", re.I)


def abstains(text: str) -> bool:
    """Whether the sentence says the documents do not answer (`not_in_documents`)."""
    return bool(_ABSTAIN.search(text))


@dataclass
class Claim:
    text: str
    status: str
    passage: dict[str, Any] | None = None  # text + location (+ chunk) of what supports it
    score: float | None = None  # similarity, 0-100 (100 for a verified quote)
    missing: list[str] = field(default_factory=list)  # facts no close passage holds
    nearest: dict[str, Any] | None = None  # unsupported: the closest passage, for comparison

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _passage_dict(p: Passage) -> dict[str, Any]:
    return {"text": p.text, **p.location()}


class Grounder:
    """Grounds the claims of answers over one set of sources (passages built once)."""

    def __init__(self, sources: Iterable[tuple[Document, Sequence[Section]]], method: str = "token_set",
                 threshold: float = SUPPORT_THRESHOLD) -> None:
        self.sources = [(d, list(s)) for d, s in sources]
        self.passages = passages(self.sources)
        self._facts = [facts(p.text) for p in self.passages]
        self.method = method
        self.threshold = threshold
        self._index: _Index | None = None  # search's, built at its first use
        self._single: list[Passage] = []

    def search(self, question: str, k: int = 3) -> Found:
        """The `k` sentences that best hold the question's words (BM25 over single sentences), among those
        holding at least one *rare* word of it (in at most a tenth of the sentences, or three): a word
        every clause has ("agreement") finds nothing on its own. Also the question's words that no
        sentence holds at all. What the prompt shows the model before the question (prompts.search_text)."""
        terms = question_terms(question)
        if not terms or k <= 0:
            return Found([], [])
        index, df, mean_len = self._search_index()
        n = len(index)
        rare = {t for t in terms if 0 < df.get(t, 0) <= self._rare_max()}
        scored: list[tuple[float, int]] = []
        for i, (tf, length) in enumerate(index):
            if not rare.intersection(tf):
                continue
            score = 0.0
            for t in terms:
                f = tf.get(t, 0)
                if f:
                    idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                    score += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * length / mean_len))  # k1 1.2, b 0.75
            scored.append((score, i))
        best = [self._single[i] for _, i in sorted(scored, key=lambda si: (-si[0], si[1]))[:k]]
        return Found(best, [w for t, w in terms.items() if not df.get(t)])

    def _unknown_subject(self, plain: str, own: Facts, question: str) -> list[str]:
        """The question's words this claim repeats that no sentence of the documents holds, when they are
        most of the question's words it repeats: "the pass code of the blue vault is 71615" is about a
        thing the documents never name, however well "the pass key is 71615" matches its other words.
        A claim with no fact of its own rests on its words alone, so for it a word in more than a tenth
        of the sentences ("agreement", in a contract) does not count as known: "the guarantor of this
        agreement is the customer" is about a guarantor. A claim with a fact that repeats one unknown
        word beside a known one ("the lease ends on 1 May", where the documents say "expires") is left
        to the similarity and its facts."""
        terms = question_terms(question)
        if not terms:
            return []
        df = self._search_index()[1]
        mine = {stem(w) for w in words(plain)} & terms.keys()
        if not own:
            mine = {t for t in mine if df.get(t, 0) <= self._rare_max()}
        unknown = [terms[t] for t in sorted(mine) if not df.get(t)]
        return unknown if 2 * len(unknown) > len(mine) else []

    def answers(self, claims: Sequence[Claim], question: str, said: str = "") -> bool:
        """Whether an answer with these claims answers `question` from the documents: it abstains or
        checks nothing (shown as it is), or one of its claims is quoted or supported and that claim or
        its passage holds a word of the question (a question without such words, "Summarize this", asks
        about nothing in particular). An answer whose every checked claim is unsupported, or that only
        copies document text unrelated to the question, does not. `said`: what the user said in the
        conversation's earlier turns; an unsupported claim whose facts all come from it ("Your name is
        Zorblat") answers from the conversation, which the documents cannot hold."""
        checked = [c for c in claims if c.status in ("quoted", "supported", "unsupported")]
        if not checked or any(c.status == "not_in_documents" for c in claims):
            return True
        grounded = [c for c in checked if c.status in ("quoted", "supported") or _from(c, said)]
        terms = question_terms(question)
        if not grounded or not terms:
            return bool(grounded)
        return any(terms.keys() & {stem(w) for w in words(c.text + " " + (c.passage or {}).get("text", ""))}
                   for c in grounded)

    def _rare_max(self) -> int:
        """The most sentences a *rare* word is in: a tenth of them, or three."""
        return max(3, len(self._search_index()[0]) // 10)

    def _search_index(self) -> _Index:
        """Per single sentence its stems' counts and length; each stem's sentence count; the mean length."""
        if self._index is None:
            self._single = [p for p in self.passages if not p.pair]
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

    def ground(self, answer: str, question: str = "", evidence: Sequence[Passage] = ()) -> list[Claim]:
        return [c for c in (self.claim(t, question, evidence) for t in split_claims(answer)) if c is not None]

    def claim(self, text: str, question: str = "", evidence: Sequence[Passage] = ()) -> Claim | None:
        plain = _MARKER.sub(" ", text).strip()
        own = facts(plain)
        content = words(plain)
        if not own and len(content) < 2:
            return None  # "Yes.", "1." : nothing to check
        if abstains(plain):
            return Claim(text, "not_in_documents")
        if question and _restates(plain, own, question):
            return Claim(text, "restates_question")
        unknown = self._unknown_subject(plain, own, question)
        quoted = self._quoted(text, own)
        if quoted is not None:
            if unknown:
                return Claim(text, "unsupported", score=quoted.score, missing=unknown, nearest=quoted.passage)
            return quoted
        evidence_facts = [facts(p.text) for p in evidence]
        best = self._best(plain, own, list(evidence), evidence_facts) if evidence else None
        if best is None or best[0] < self.threshold or best[2]:
            whole = self._best(plain, own, self.passages, self._facts)
            if whole is not None and (best is None or _better(whole, best)):
                best = whole
        if best is None:
            return Claim(text, "unsupported", missing=own.all())
        score, passage, missing = best
        missing = missing + [w for w in unknown if w not in missing]
        if score >= self.threshold and not missing:
            return Claim(text, "supported", _passage_dict(passage), round(score, 1))
        return Claim(text, "unsupported", score=round(score, 1), missing=missing, nearest=_passage_dict(passage))

    def _best(self, plain: str, own: Facts, cands: list[Passage],
              cand_facts: list[Facts]) -> tuple[float, Passage, list[str]] | None:
        """The best passage holding all the claim's facts; failing that, the closest one (with what it lacks)."""
        best_ok: tuple[float, Passage, list[str]] | None = None
        best_any: tuple[float, Passage, list[str]] | None = None
        for p, f in sorted(zip(cands, cand_facts, strict=True), key=lambda pf: pf[0].pair):
            if p.pair and best_ok is not None and best_ok[0] >= self.threshold:
                break  # a single sentence does
            score = similarity(plain, p.text, self.method)
            if best_any is not None and score <= best_any[0] and best_ok is not None and score <= best_ok[0]:
                continue
            missing = missing_facts(own, p.text, f) if own else []
            if not missing and (best_ok is None or score > best_ok[0] or (
                    score == best_ok[0] and len(p.text) < len(best_ok[1].text))):
                best_ok = (score, p, [])
            if best_any is None or score > best_any[0]:
                best_any = (score, p, missing)
        if best_ok is not None and best_ok[0] >= self.threshold:
            return best_ok
        return best_any

    def _quoted(self, text: str, own: Facts) -> Claim | None:
        """`quoted` when a verified citation's passage (the sentences around its quote) holds the claim's facts."""
        if not _MARKER.search(text):
            return None
        for cit in extract_citations(text, self.sources):
            if not cit.verified or not cit.quote:
                continue
            around = self._around(cit.quote, cit.document_id, cit.page, cit.line_start, cit.line_end)
            if around is None:
                continue
            if not missing_facts(own, around.text):
                return Claim(text, "quoted", {**_passage_dict(around), "quote": cit.quote}, 100.0)
        return None

    def _around(self, quote: str, document_id: str | None, page: int | None, start: int | None,
                end: int | None) -> Passage | None:
        """The shortest passage in the cited place that contains the quote."""
        q = squash(quote)
        found: Passage | None = None
        for p in self.passages:
            if p.document_id != document_id or (page is not None and p.page != page):
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
           "split_claims", "summary"]
