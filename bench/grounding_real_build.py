"""Build bench/grounding_real/set.jsonl and answers.jsonl from the hand-written label sources.

The labels are written by reading each document, in bench/grounding_real/source/<doc>.txt, one file per
document, in a small line format so that a reviewer can read them beside the document:

    @ MPL-2.0.txt                                   the document (a file in bench/grounding_real/docs/)
    Q+ Who is the license steward?                  a new answer to this question; Q+ correct, Q- not
    Q- =                                            "=" repeats the previous question (another answer)
    T The answer as the model wrote it ...          optional: the whole answer's text (model answers), when
                                                    it holds more than its labelled sentences
    verbatim | S | q:Mozilla Foundation is the license steward. | Mozilla Foundation is ... | note

A sentence line is: phrasing | label | support | sentence [| note].
- phrasing: verbatim, paraphrase, partial, wrong_number, wrong_party, wrong_meaning, negation,
  restates_question, unrelated_shared_words, loop, abstain, model; "loop*6" means the sentence stands
  six times in a row in the answer (one labelled row, the repetition is in the answer's text);
- label: S supported, U unsupported, R restates, A abstain (an honest one: the document does not say);
- support: "-" for none, or one or more of "q:<exact text of the document>" (whitespace, line breaks
  included, collapse to one space when matching; the text must occur exactly once) and "L:<a>-<b>"
  (physical lines, 1-based), joined by " && ". A quote becomes the range of lines it spans.

Run: python bench/grounding_real_build.py   (then python bench/grounding_real_check.py)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "grounding_real"
PHRASINGS = {"verbatim", "paraphrase", "partial", "wrong_number", "wrong_party", "wrong_meaning", "negation",
             "restates_question", "unrelated_shared_words", "loop", "abstain", "model"}
LABELS = {"S": "supported", "U": "unsupported", "R": "restates", "A": "abstain"}


class SourceError(ValueError):
    pass


class Doc:
    """A document's text with whitespace collapsed, and for each kept character its physical line."""

    def __init__(self, path: Path) -> None:
        raw = path.read_text(encoding="utf-8")
        self.lines = raw.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        chars: list[str] = []
        line_of: list[int] = []
        for number, line in enumerate(self.lines, start=1):
            for ch in line + "\n":
                if ch.isspace():
                    if chars and chars[-1] != " ":
                        chars.append(" ")
                        line_of.append(number)
                else:
                    chars.append(ch)
                    line_of.append(number)
        self.flat = "".join(chars)
        self.line_of = line_of

    def find(self, quote: str) -> tuple[int, int]:
        needle = re.sub(r"\s+", " ", quote.strip())
        first = self.flat.find(needle)
        if first < 0:
            raise SourceError(f"quote not in document: {needle!r}")
        if self.flat.find(needle, first + 1) >= 0:
            raise SourceError(f"quote occurs more than once, make it longer: {needle!r}")
        return self.line_of[first], self.line_of[first + len(needle) - 1]


def parse_support(spec: str, doc: Doc) -> list[dict[str, int]]:
    spec = spec.strip()
    if spec == "-":
        return []
    ranges = []
    for part in spec.split(" && "):
        part = part.strip()
        if part.startswith("q:"):
            start, end = doc.find(part[2:])
        elif part.startswith("L:"):
            a, _, b = part[2:].partition("-")
            start, end = int(a), int(b or a)
        else:
            raise SourceError(f"support must be '-', 'q:…' or 'L:a-b': {part!r}")
        if not (1 <= start <= end <= len(doc.lines)):
            raise SourceError(f"range {start}-{end} outside the document's {len(doc.lines)} lines")
        ranges.append({"line_start": start, "line_end": end})
    return ranges


def build() -> tuple[list[dict], list[dict]]:
    sentences: list[dict] = []
    answers: list[dict] = []
    parts: dict[str, list[str]] = {}
    texts: dict[str, str] = {}  # an answer's text as the model wrote it ("T" lines), when not just its sentences
    for source in sorted((ROOT / "source").glob("*.txt")):
        doc_name = ""
        doc: Doc | None = None
        answer: dict | None = None
        question = ""
        counter: dict[str, int] = {}
        for lineno, raw in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("@ "):
                    answer = None
                    doc_name = line[2:].strip()
                    doc = Doc(ROOT / "docs" / doc_name)
                    continue
                if line.startswith(("Q+ ", "Q- ")):
                    text = line[3:].strip()
                    question = question if text == "=" else text
                    stem = Path(doc_name).stem if doc_name.count(".") <= 1 else doc_name.rsplit(".", 1)[0]
                    stem = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower()
                    counter[stem] = counter.get(stem, 0) + 1
                    answer = {"answer_id": f"{stem}-a{counter[stem]:02d}", "doc": doc_name, "question": question,
                              "answer": "", "correct": line.startswith("Q+")}
                    answers.append(answer)
                    parts[answer["answer_id"]] = []
                    continue
                if answer is None or doc is None:
                    raise SourceError("a sentence before any '@ doc' and 'Q+/Q-' line")
                if line.startswith("T "):
                    texts[answer["answer_id"]] = line[2:].strip()
                    continue
                fields = [f.strip() for f in line.split(" | ")]
                if len(fields) not in (4, 5):
                    raise SourceError(f"expected 4 or 5 fields separated by ' | ', got {len(fields)}")
                phrasing, label, support, sentence = fields[:4]
                note = fields[4] if len(fields) == 5 else ""
                repeats = 1
                if "*" in phrasing:
                    phrasing, _, times = phrasing.partition("*")
                    repeats = int(times)
                if phrasing not in PHRASINGS:
                    raise SourceError(f"unknown phrasing {phrasing!r}")
                if label not in LABELS:
                    raise SourceError(f"unknown label {label!r}")
                ranges = parse_support(support, doc)
                if (label == "S") != bool(ranges):
                    raise SourceError("a supported sentence needs a support range, any other label none")
                if repeats > 1:
                    note = (note + "; " if note else "") + f"stands {repeats} times in a row in the answer"
                sid = f"{answer['answer_id']}-s{sum(1 for s in sentences if s['answer_id'] == answer['answer_id']) + 1}"
                sentences.append({"id": sid, "doc": doc_name, "question": question, "answer_id": answer["answer_id"],
                                  "sentence": sentence, "phrasing": phrasing, "label": LABELS[label],
                                  "support": ranges, "note": note})
                parts[answer["answer_id"]].extend([sentence] * repeats)
            except (SourceError, OSError, ValueError) as exc:
                raise SourceError(f"{source.name}:{lineno}: {exc}") from exc
    for row in answers:
        row["answer"] = texts.get(row["answer_id"]) or " ".join(parts[row["answer_id"]])
    return sentences, answers


def main() -> int:
    try:
        sentences, answers = build()
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 1
    with (ROOT / "set.jsonl").open("w", encoding="utf-8") as out:
        for row in sentences:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (ROOT / "answers.jsonl").open("w", encoding="utf-8") as out:
        for row in answers:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(sentences)} sentences, {len(answers)} answers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
