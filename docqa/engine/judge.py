"""An entailment judge: a language model asked whether a passage says what a claim says.

The model's whole answer is constrained to ``yes`` or ``no`` by a llama.cpp grammar (llama_cpp's
``LlamaGrammar``), so it cannot wander; greedy decoding makes it repeatable. It judges the passage the
word measure (grounding.Grounder) found for the claim: the judge never searches, it only confirms or
refuses.

A judge may only *decide* when it is strong enough. Measured on the real labelled set
(``python -m bench.grounding --set real --judge``; the numbers are in the README), the small models
docqa can run here answer close to chance or say "yes" to nearly everything: SmolLM2-135M-Instruct
(docqa's embedded model) and Gemma 3 270M. So a model below ``MIN_JUDGE_PARAMS`` parameters is
*advisory*: its verdict is recorded beside the claim, and the word measure decides. Each answer's
grounding metadata names the method that decided (``method``) and the judge that was asked
(``judge``), so a reader can tell an ``idf`` mark from an ``idf+judge`` one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_JUDGE_PARAMS = 1_000_000_000  # below this a judge only advises (135M and 270M measured near chance)
PROMPT = ("Passage: {passage}\n\nClaim: {claim}\n\nDoes the passage say what the claim says, with every "
          "number, date, name and party the same and nothing the passage does not say? Answer yes or no.")
GRAMMAR = 'root ::= "yes" | "no"'
MAX_PASSAGE_CHARS = 1500


@dataclass
class Verdict:
    """One judgement: whether the passage supports the claim, by which judge, and whether it counted."""

    supports: bool
    judge: str
    decides: bool

    def to_dict(self) -> dict[str, Any]:
        return {"supports": self.supports, "judge": self.judge, "decides": self.decides}


@dataclass
class Judge:
    """A yes/no entailment judge over a llama.cpp model.

    `ask(claim, passage)` returns the model's constrained answer; `name` and `params` say which model
    it is; `decides` whether its answer may change a claim's status (params >= MIN_JUDGE_PARAMS, or
    forced either way by `decides=`). `complete` is how the model is called (llama_cpp.Llama's
    create_chat_completion with the grammar, by default): it takes the chat messages and returns the
    text of the answer."""

    name: str
    params: int
    complete: Callable[[list[dict[str, str]]], str]
    force_decides: bool | None = None
    calls: int = 0
    seconds: float = 0.0
    _cache: dict[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def decides(self) -> bool:
        if self.force_decides is not None:
            return self.force_decides
        return self.params >= MIN_JUDGE_PARAMS

    def ask(self, claim: str, passage: str) -> bool:
        key = (claim, passage)
        if key not in self._cache:
            messages = [{"role": "user", "content": PROMPT.format(passage=_clip(passage), claim=claim.strip())}]
            t0 = time.perf_counter()
            text = self.complete(messages)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            self._cache[key] = text.strip().casefold().startswith("yes")
        return self._cache[key]

    def verdict(self, claim: str, passage: str) -> Verdict:
        return Verdict(self.ask(claim, passage), self.name, self.decides)

    @classmethod
    def from_llama(cls, llm: Any, name: str | None = None, decides: bool | None = None) -> Judge:
        """A judge over a loaded llama_cpp.Llama (the answering model itself, or another)."""
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)

        def complete(messages: list[dict[str, str]]) -> str:
            out = llm.create_chat_completion(messages, max_tokens=2, temperature=0.0, grammar=grammar)
            return str(out["choices"][0]["message"]["content"] or "")

        model_name = name or Path(str(getattr(llm, "model_path", "model"))).name
        return cls(model_name, model_params(llm), complete, decides)

    @classmethod
    def from_path(cls, path: str | Path, *, n_ctx: int = 1024, threads: int = 2, decides: bool | None = None,
                  extra_buffers: bool = False) -> Judge:
        """A judge over a GGUF file, loaded here (the bench's way; docqa's runner passes its own model)."""
        from docqa.engine.local.runner import new_llama

        llm = new_llama({"model_path": str(path), "n_ctx": n_ctx, "n_batch": 512, "n_threads": threads,
                         "n_threads_batch": threads, "verbose": False}, extra_buffers=extra_buffers)
        return cls.from_llama(llm, Path(path).name, decides)


def model_params(llm: Any) -> int:
    """The model's parameter count (llama.cpp's count of its weights; 0 when unknown)."""
    try:
        import llama_cpp

        return int(llama_cpp.llama_model_n_params(llm.model))
    except Exception:  # noqa: BLE001 - a model without the call is treated as unknown, never as strong
        return 0


def method(judge: Judge | None) -> str:
    """The grounding method an answer's metadata names: "idf", or "idf+judge" when a judge decided."""
    return "idf+judge" if judge is not None and judge.decides else "idf"


def apply(claims: Sequence[Any], judge: Judge, supported: Sequence[str] = ("supported",)) -> list[Verdict]:
    """Ask the judge about each claim marked `supported` (a quoted claim's quote is verified text: it is
    not asked). A deciding judge that says "no" turns the claim `unsupported` ("judge: no" in its
    `missing`, the passage kept as its `nearest`); an advisory one is only recorded (`claim.judge`)."""
    out: list[Verdict] = []
    for c in claims:
        if c.status not in supported or not c.passage:
            continue
        v = judge.verdict(c.text, c.passage["text"])
        c.judge = v.to_dict()
        out.append(v)
        if v.decides and not v.supports:
            c.status, c.nearest, c.passage = "unsupported", c.passage, None
            c.missing = [*c.missing, JUDGE_MISSING]
    return out


JUDGE_MISSING = "judge: the passage does not say this"


def _clip(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= MAX_PASSAGE_CHARS else text[: MAX_PASSAGE_CHARS - 1] + "…"
