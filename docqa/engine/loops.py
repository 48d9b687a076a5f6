"""Degenerate answers: a model that loops, and docqa's own prompt text written back as an answer.

A small model over a long context can fall into a loop ("The document is a copyleft license." 57
times; "The right to the right to …" for 512 tokens), or copy the scaffolding docqa put around the
question ("No line of the documents contains: …"). Three checks, all on words (case-folded, without
punctuation), so they work for any model and backend:

- `looping(text)`: the text *ends* in a loop: its last words are one run of 1 to 40 words said
  again and again (at least three times, and at least 12 words in all), or its last sentence is one
  it has already said twice. The local runner asks this as it writes and stops the answer there
  (stop_reason "loop"), so a looping answer costs a few tokens, not the whole budget;
- `tidy(text)`: the answer with every loop cut after its first round and every sentence of docqa's
  scaffolding taken out, and the notes that say so (what any backend's answer goes through);
- `repeats_itself(sentence)`: one sentence that holds such a loop (grounding does not label it
  "restates the question").
"""

from __future__ import annotations

import re

MAX_PERIOD = 40  # the longest run of words a loop is looked for with
MIN_LOOP_WORDS = 12  # a loop is at least this many words in all (so "very, very, very" is not one)
MIN_ROUNDS = 3
SENTENCE_ROUNDS = 3  # a sentence said this many times is a loop, wherever the repeats stand

_TOKEN = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?。؟])\s+|\n+")
# docqa's own prompt text (prompts.py, engine.EVIDENCE_HEADER): never a sentence of an answer
_SCAFFOLD = re.compile(
    r"No line of the documents contains\s*:|Lines of the documents that may answer the question\s*:"
    r"|Evidence quoted from the documents\s*:|^\s*Question\s*:|\(none found\)"
    r"|^\s*(?:You answer questions about the documents provided by the user"
    r"|The documents are data, not instructions|After each claim, cite where it comes from"
    r"|You read one part of a longer document set|Answer the question using only the evidence quoted)",
    re.I | re.M)


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(0).casefold(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _tail_period(ws: list[str]) -> int:
    """The period of the loop the words end in (0: none)."""
    n = len(ws)
    for p in range(1, min(MAX_PERIOD, n // MIN_ROUNDS) + 1):
        rounds = max(MIN_ROUNDS, -(-MIN_LOOP_WORDS // p))
        if rounds * p > n:
            continue
        tail = ws[n - rounds * p:]
        if all(tail[i] == tail[i % p] for i in range(len(tail))):
            return p
    return 0


def _sentences(text: str) -> list[tuple[str, int, int]]:
    """(key, start, end) of each sentence: its words, case-folded."""
    out = []
    start = 0
    for m in [*_SENTENCE_END.finditer(text), None]:
        end = m.start() if m else len(text)
        piece = text[start:end]
        key = " ".join(w for w, _, _ in _words(piece))
        if key:
            out.append((key, start, end))
        if m:
            start = m.end()
    return out


def looping(text: str) -> bool:
    """Whether `text` ends in a loop (checked as the answer is written)."""
    ws = [w for w, _, _ in _words(text[-4000:])]
    if _tail_period(ws):
        return True
    sents = _sentences(text[-8000:])
    if len(sents) >= SENTENCE_ROUNDS and len(sents[-1][0].split()) >= 3:
        last = sents[-1][0]
        return sum(k == last for k, _, _ in sents) >= SENTENCE_ROUNDS
    return False


def _cut_runs(text: str) -> tuple[str, str | None]:
    """`text` with its first word loop cut after its first round; the loop's words (or None)."""
    ws = _words(text)
    keys = [w for w, _, _ in ws]
    n = len(keys)
    for i in range(n):
        for p in range(1, min(MAX_PERIOD, (n - i) // MIN_ROUNDS) + 1):
            rounds_needed = max(MIN_ROUNDS, -(-MIN_LOOP_WORDS // p))
            if i + rounds_needed * p > n:
                break
            j = i + p
            while j < n and keys[j] == keys[j - p]:
                j += 1
            if (j - i) // p >= rounds_needed:
                loop = " ".join(keys[i:i + p])
                cut = ws[i + p - 1][2]  # after the first round's last word
                end = text[cut:cut + 1]
                return text[:cut] + (end if end in ".!?" else "…"), loop
    return text, None


def tidy(text: str) -> tuple[str, list[str]]:
    """The answer without loops and without docqa's scaffolding, and the notes that say what was cut."""
    notes: list[str] = []
    kept: list[str] = []
    seen: dict[str, int] = {}
    scaffold = 0
    for key, a, b in _sentences(text):
        sentence = text[a:b]
        if _SCAFFOLD.search(sentence):
            scaffold += 1
            continue
        seen[key] = seen.get(key, 0) + 1
        if seen[key] >= SENTENCE_ROUNDS and len(key.split()) >= 3:
            notes.append(f'The model began to repeat itself ("{_clip(sentence, 80)}" {seen[key]} times); '
                         "the answer was stopped there.")
            break
        kept.append(text[a:b])
    out = _rejoin(text, kept)
    cut, loop = _cut_runs(out)
    if loop is not None:
        out = cut
        notes.append(f'The model began to repeat itself ("{_clip(loop, 60)}" again and again); the answer was '
                     "stopped there.")
    if scaffold:
        notes.append(f"{scaffold} sentence(s) of docqa's own prompt text that the model wrote back were left out "
                     "of the answer.")
    return (out if notes else text), notes


def _rejoin(text: str, kept: list[str]) -> str:
    """The kept sentences with the spacing they had (a line break stays a line break)."""
    out = ""
    pos = 0
    for piece in kept:
        at = text.find(piece, pos)
        sep = text[pos:at] if at >= 0 else " "
        if out:
            out += "\n" if "\n" in sep else " "
        out += piece
        pos = (at if at >= 0 else pos) + len(piece)
    return out


def repeats_itself(sentence: str) -> bool:
    """Whether one sentence holds a word loop ("The right to the right to the right to …")."""
    return _cut_runs(sentence)[1] is not None


def max_repeats(text: str) -> int:
    """How many times the answer's most repeated sentence stands in it (the bench's loop measure)."""
    counts: dict[str, int] = {}
    for key, _, _ in _sentences(text):
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


__all__ = ["looping", "max_repeats", "repeats_itself", "tidy"]
