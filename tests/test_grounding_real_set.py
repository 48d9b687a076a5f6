"""The real labelled grounding set (bench/grounding_real/) is consistent and meets issue 22's minimums.

No model is needed: these tests read the committed files. They check what bench/grounding_real_check.py
checks, that the committed set.jsonl and answers.jsonl are what the label sources build, and that the
checker catches a broken set (a range past the end of a document, a range on blank lines, a duplicate
id, an answer_id that does not exist).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
ROOT = BENCH / "grounding_real"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_module = load("grounding_real_check")
build_module = load("grounding_real_build")


def test_the_committed_set_is_consistent_and_meets_the_minimums() -> None:
    problems, counts = check_module.check(ROOT)
    assert problems == []
    assert counts["documents"] >= 12 and counts["kinds"] == 3 and counts["arabic"] >= 1
    assert counts["sentences"] >= 300
    assert counts["correct_answers"] >= 40
    supported = counts["per_label"]["supported"] / counts["sentences"]
    assert 0.40 <= supported <= 0.60, supported
    # every phrasing the issue names is present
    for phrasing in ("verbatim", "paraphrase", "partial", "wrong_number", "wrong_party", "wrong_meaning",
                     "negation", "restates_question", "unrelated_shared_words", "loop", "abstain"):
        assert counts["per_phrasing"].get(phrasing, 0) >= 5, phrasing


def test_the_committed_files_are_what_the_label_sources_build() -> None:
    sentences, answers = build_module.build()
    committed = [json.loads(line) for line in (ROOT / "set.jsonl").read_text(encoding="utf-8").splitlines()]
    committed_answers = [json.loads(line)
                         for line in (ROOT / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sentences == committed
    assert answers == committed_answers


def test_a_supported_sentence_points_at_the_words_it_claims() -> None:
    """Spot checks by hand-read lines: the range holds the fact, in the document's own words."""
    rows = {row["sentence"]: row for row in map(json.loads, (ROOT / "set.jsonl").read_text().splitlines())}

    def text(row: dict) -> str:
        lines = (ROOT / "docs" / row["doc"]).read_text(encoding="utf-8").split("\n")
        return " ".join(" ".join(lines[s["line_start"] - 1:s["line_end"]]) for s in row["support"])

    steward = rows["The license steward of the Mozilla Public License is Mozilla Foundation."]
    assert steward["label"] == "supported" and "Mozilla Foundation is the license steward." in text(steward)
    fsf = rows["The license steward of the MPL 2.0 is the Free Software Foundation."]
    assert fsf["label"] == "unsupported" and fsf["support"] == []
    offer = rows["The written offer must be valid for at least three years, and for as long as you offer spare "
                 "parts or customer support for that product model."]
    assert "three years" in text(offer) and "spare parts" in text(offer)
    assert offer["support"][0]["line_end"] > offer["support"][0]["line_start"]  # across a line wrap
    php = rows["يتطلب الخادم PHP 5.1 أو أحدث، ويفضل أحدث إصدار مستقر."]
    assert "PHP 5.1" in text(php)


@pytest.mark.parametrize("breakage", ["past_the_end", "blank_lines", "duplicate_id", "missing_answer"])
def test_the_checker_catches_a_broken_set(tmp_path: Path, breakage: str) -> None:
    copy = tmp_path / "grounding_real"
    shutil.copytree(ROOT, copy)
    rows = [json.loads(line) for line in (copy / "set.jsonl").read_text(encoding="utf-8").splitlines()]
    supported = next(row for row in rows if row["doc"] == "MPL-2.0.txt" and row["support"])
    if breakage == "past_the_end":
        supported["support"] = [{"line_start": 370, "line_end": 400}]
    elif breakage == "blank_lines":
        supported["support"] = [{"line_start": 3, "line_end": 3}]  # MPL-2.0.txt line 3 is blank
    elif breakage == "duplicate_id":
        rows[1]["id"] = rows[0]["id"]
    else:
        supported["answer_id"] = "no-such-answer"
    (copy / "set.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
                                    encoding="utf-8")
    problems, _ = check_module.check(copy)
    assert problems, breakage
