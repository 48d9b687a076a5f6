"""The entailment judge over the real embedded model (SmolLM2-135M through llama-cpp-python): its answer is
constrained to yes/no by a llama.cpp grammar; a model under MIN_JUDGE_PARAMS only advises, a deciding one
turns a claim it refuses unsupported; the method an answer names follows."""

from __future__ import annotations

import pytest

from docqa.engine import judge as judge_mod
from docqa.engine.grounding import Claim
from docqa.engine.judge import JUDGE_MISSING, MIN_JUDGE_PARAMS, Judge
from docqa.engine.models import ModelRegistry
from docqa.settings import Settings

PASSAGE = "Mozilla Foundation is the license steward."  # MPL-2.0, section 10.1


@pytest.fixture(scope="module")
def judge() -> Judge:
    path = ModelRegistry(Settings()).get(None).path
    return Judge.from_path(path, n_ctx=512, threads=1)


def supported(text: str) -> Claim:
    return Claim(text, "supported", {"text": PASSAGE, "line_start": 1, "line_end": 1}, 100.0)


def test_the_embedded_model_answers_yes_or_no_and_only_advises(judge: Judge) -> None:
    assert 0 < judge.params < MIN_JUDGE_PARAMS and not judge.decides
    outputs: list[str] = []
    plain = judge.complete

    def recording(messages: list[dict[str, str]]) -> str:
        outputs.append(plain(messages))
        return outputs[-1]

    judge.complete = recording
    claim = supported("The Free Software Foundation is the license steward.")
    verdicts = judge_mod.apply([claim], judge)
    assert outputs and outputs[0].strip() in ("yes", "no")  # the grammar allows nothing else
    assert len(verdicts) == 1 and claim.judge == verdicts[0].to_dict() and claim.judge["decides"] is False
    assert claim.status == "supported"  # advisory: the word measure's mark stands, whatever it said
    assert judge_mod.method(judge) == "idf" and judge_mod.method(None) == "idf"
    judge.ask(claim.text, PASSAGE)
    assert len(outputs) == 1  # asked once: the same pair is answered from its cache


def test_a_deciding_judge_that_says_no_turns_the_claim_unsupported(judge: Judge) -> None:
    strict = Judge(judge.name, judge.params, lambda messages: "no", force_decides=True)
    claim = supported("The Free Software Foundation is the license steward.")
    judge_mod.apply([claim, Claim("Yes.", "restates_question")], strict)
    assert claim.status == "unsupported" and claim.passage is None and JUDGE_MISSING in claim.missing
    assert claim.nearest is not None and claim.nearest["text"] == PASSAGE
    assert judge_mod.method(strict) == "idf+judge"
    kind = Judge(judge.name, judge.params, lambda messages: "yes", force_decides=True)
    right = supported("The license steward is Mozilla Foundation.")
    judge_mod.apply([right], kind)
    assert right.status == "supported" and right.judge is not None and right.judge["supports"] is True
