"""Check bench/grounding_real/ (the real labelled grounding set) for consistency; prints counts.

Checks: every manifest document exists in docs/ and every document in docs/ is in the manifest; every
sentence's doc is a manifest document; every support range lies inside its document and its lines hold
text; a supported sentence has a range and no other label has one; ids are unique; every sentence's
answer_id is an answer of the same document and question; each answer's text holds its sentences;
a correct answer has no unsupported or restating sentence and an incorrect one has at least one;
fields and values are the contract's; and the issue's minimums hold (12 documents, three kinds, one
Arabic document, 300 sentences, 40 correct answers).

Run: python bench/grounding_real_check.py   (exit status 1 with the problems listed when any fails);
--markdown prints the count tables of the README instead of the JSON counts.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "grounding_real"
SENTENCE_FIELDS = {"id", "doc", "question", "answer_id", "sentence", "phrasing", "label", "support", "note"}
ANSWER_FIELDS = {"answer_id", "doc", "question", "answer", "correct"}
MANIFEST_FIELDS = {"file", "source", "kind", "language", "licence", "note"}
PHRASINGS = {"verbatim", "paraphrase", "partial", "wrong_number", "wrong_party", "wrong_meaning", "negation",
             "restates_question", "unrelated_shared_words", "loop", "abstain", "model"}
LABELS = {"supported", "unsupported", "restates", "abstain"}
KINDS = {"legal", "technical", "code"}
MINIMUMS = {"documents": 12, "kinds": 3, "arabic": 1, "sentences": 300, "correct_answers": 40}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def doc_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def check(root: Path = ROOT) -> tuple[list[str], dict]:
    """Return (problems, counts) for the set under root."""
    problems: list[str] = []
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    sentences = read_jsonl(root / "set.jsonl")
    answers = read_jsonl(root / "answers.jsonl")

    docs: dict[str, list[str]] = {}
    for entry in manifest:
        if set(entry) != MANIFEST_FIELDS:
            problems.append(f"manifest entry {entry.get('file')}: fields {sorted(entry)}")
        if entry.get("kind") not in KINDS:
            problems.append(f"manifest entry {entry.get('file')}: kind {entry.get('kind')!r}")
        path = root / "docs" / entry["file"]
        if not path.is_file():
            problems.append(f"manifest names {entry['file']}, which is not in docs/")
            continue
        docs[entry["file"]] = doc_lines(path)
    for path in (root / "docs").iterdir():
        if path.name not in docs:
            problems.append(f"docs/{path.name} is not in the manifest")

    answer_by_id: dict[str, dict] = {}
    for row in answers:
        if set(row) != ANSWER_FIELDS:
            problems.append(f"answer {row.get('answer_id')}: fields {sorted(row)}")
        if row["answer_id"] in answer_by_id:
            problems.append(f"answer id {row['answer_id']} is not unique")
        answer_by_id[row["answer_id"]] = row
        if row["doc"] not in docs:
            problems.append(f"answer {row['answer_id']}: unknown doc {row['doc']}")
        if not isinstance(row["correct"], bool):
            problems.append(f"answer {row['answer_id']}: correct must be true or false")

    seen: set[str] = set()
    answered: set[str] = set()
    for row in sentences:
        sid = row.get("id")
        if set(row) != SENTENCE_FIELDS:
            problems.append(f"sentence {sid}: fields {sorted(row)}")
            continue
        if sid in seen:
            problems.append(f"sentence id {sid} is not unique")
        seen.add(sid)
        if row["phrasing"] not in PHRASINGS:
            problems.append(f"sentence {sid}: phrasing {row['phrasing']!r}")
        if row["label"] not in LABELS:
            problems.append(f"sentence {sid}: label {row['label']!r}")
        if not row["sentence"].strip():
            problems.append(f"sentence {sid}: empty sentence")
        answer = answer_by_id.get(row["answer_id"])
        if answer is None:
            problems.append(f"sentence {sid}: answer {row['answer_id']} does not exist")
        else:
            answered.add(row["answer_id"])
            if answer["doc"] != row["doc"] or answer["question"] != row["question"]:
                problems.append(f"sentence {sid}: doc or question differs from its answer's")
            if row["sentence"] not in answer["answer"]:
                problems.append(f"sentence {sid}: not found in its answer's text")
        lines = docs.get(row["doc"])
        if lines is None:
            problems.append(f"sentence {sid}: unknown doc {row['doc']}")
            continue
        if (row["label"] == "supported") != bool(row["support"]):
            problems.append(f"sentence {sid}: a supported sentence needs a range and no other label has one")
        for span in row["support"]:
            start, end = span.get("line_start"), span.get("line_end")
            if not (isinstance(start, int) and isinstance(end, int) and 1 <= start <= end <= len(lines)):
                problems.append(f"sentence {sid}: range {start}-{end} outside {row['doc']} ({len(lines)} lines)")
                continue
            if not any(line.strip() for line in lines[start - 1:end]):
                problems.append(f"sentence {sid}: lines {start}-{end} of {row['doc']} hold no text")
    for answer_id, answer in answer_by_id.items():
        if answer_id not in answered:
            problems.append(f"answer {answer_id} has no labelled sentence")
            continue
        labels = {row["label"] for row in sentences if row["answer_id"] == answer_id}
        wrong = bool(labels & {"unsupported", "restates"})
        if answer["correct"] == wrong:
            problems.append(f"answer {answer_id}: correct={answer['correct']} but its sentences are {sorted(labels)} "
                            "(a correct answer has no unsupported or restating sentence, a wrong one has one)")

    kinds = {entry["kind"] for entry in manifest}
    arabic = sum(1 for entry in manifest if entry["language"].split()[0] == "ar")
    counts = {
        "documents": len(docs),
        "kinds": len(kinds),
        "arabic": arabic,
        "sentences": len(sentences),
        "answers": len(answers),
        "correct_answers": sum(1 for row in answers if row["correct"]),
        "per_label": dict(Counter(row["label"] for row in sentences)),
        "per_phrasing": dict(Counter(row["phrasing"] for row in sentences)),
        "per_doc": dict(Counter(row["doc"] for row in sentences)),
        "per_kind": dict(Counter(next(e["kind"] for e in manifest if e["file"] == row["doc"])
                                 for row in sentences if row["doc"] in docs)),
    }
    for name, least in MINIMUMS.items():
        if counts[name] < least:
            problems.append(f"{name}: {counts[name]}, the issue asks for at least {least}")
    return problems, counts


def markdown(counts: dict) -> str:
    """The counts as the Markdown tables of bench/grounding_real/README.md."""
    sentences = [json.loads(line) for line in (ROOT / "set.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = ["supported", "unsupported", "restates", "abstain"]
    out = ["| document | " + " | ".join(labels) + " | sentences |", "|---" * (len(labels) + 2) + "|"]
    for doc in sorted(counts["per_doc"]):
        per = Counter(row["label"] for row in sentences if row["doc"] == doc)
        out.append(f"| {doc} | " + " | ".join(str(per[label]) for label in labels) + f" | {counts['per_doc'][doc]} |")
    total = Counter(row["label"] for row in sentences)
    out.append("| **all** | " + " | ".join(str(total[label]) for label in labels) + f" | {len(sentences)} |")
    out += ["", "| kind | sentences |", "|---|---|"]
    out += [f"| {kind} | {n} |" for kind, n in sorted(counts["per_kind"].items())]
    out += ["", "| phrasing | " + " | ".join(labels) + " | sentences |", "|---" * (len(labels) + 2) + "|"]
    for phrasing, n in sorted(counts["per_phrasing"].items(), key=lambda item: -item[1]):
        per = Counter(row["label"] for row in sentences if row["phrasing"] == phrasing)
        out.append(f"| {phrasing} | " + " | ".join(str(per[label]) for label in labels) + f" | {n} |")
    return "\n".join(out)


def main() -> int:
    problems, counts = check()
    if "--markdown" in sys.argv:
        print(markdown(counts))
        return 1 if problems else 0
    print(json.dumps(counts, indent=2, ensure_ascii=False))
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
