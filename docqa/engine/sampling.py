"""Default sampling for answering from documents, per model family, chosen by measurement.

Chat presets are tuned for open conversation; answering from documents wants the most likely
reading of the text. bench/quality.py measured candidates (greedy and the Qwen
Instruct preset at 0.7; temperature 0.2 is in the suite) on the embedded SmolLM2 over a generated
RULER-like suite: see the README
("Answer quality") and bench/results/quality.json. The winner is each family's default below.
Qwen models keep Qwen's own recommended presets (no Qwen model runs on these machines, so nothing
was measured that could overrule them). Any preset can be asked for per question with
`sampling: {"preset": "instruct"}` (or "thinking", "greedy", "documents"), and any option set.
"""

from __future__ import annotations

from typing import Any

from docqa.engine.models import PRESETS, Spec
from docqa.errors import InvalidRequest

GREEDY: dict[str, float] = {"temperature": 0.0, "top_p": 1.0, "top_k": 40, "min_p": 0.0, "presence_penalty": 0.0}
NAMED: dict[str, dict[str, float]] = {"instruct": PRESETS["instruct"], "thinking": PRESETS["thinking"],
                                      "greedy": GREEDY}
# family -> default for answering from documents; a family absent here uses "default"
DOCUMENTS: dict[str, dict[str, float] | None] = {
    "qwen": None,  # None: the model's own chat preset (Qwen's Instruct or Thinking recommendation)
    "default": GREEDY,  # measured on SmolLM2-135M (llama architecture), see the module docstring
}


def family(spec: Spec) -> str:
    """The vendor family a model's defaults are chosen for: 'qwen' or 'default'."""
    return spec.vendor


def document_sampling(spec: Spec, preset: Any = None) -> dict[str, float]:
    """The sampling a question starts from: the named preset, or the family's default."""
    if preset is not None:
        if preset == "documents":
            return document_sampling(spec)
        if preset not in NAMED:
            raise InvalidRequest(f"Unknown sampling preset {preset!r}; use one of documents, "
                                 f"{', '.join(NAMED)}.")
        return dict(NAMED[preset])
    chosen = DOCUMENTS.get(family(spec), DOCUMENTS["default"])
    return dict(spec.preset if chosen is None else chosen)
