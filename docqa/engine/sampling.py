"""Sampling: its values, its ranges and its defaults, in one module.

`Sampling` is what a backend samples with. `RANGES` is every option's allowed interval: the API's
request schema (web/schemas.py `SamplingIn`) is built from it and `choose` checks against it, so a
range is written once.

Default sampling for answering from documents, per vendor, chosen by measurement: chat presets
are tuned for open conversation; answering from documents wants the most likely reading of the
text. bench/quality.py measured candidates (greedy and the Qwen Instruct preset at 0.7; temperature
0.2 is in the suite) on the embedded SmolLM2 over a generated RULER-like suite: see the README
("Answer quality") and bench/results/quality.json. The winner is each vendor's default below.
Qwen models keep Qwen's own recommended presets (no Qwen model runs on these machines, so nothing
was measured that could overrule them). Any preset can be asked for per question with
`sampling: {"preset": "instruct"}` (or "thinking", "greedy", "documents"), and any option set.
"""

from __future__ import annotations

from dataclasses import dataclass

from docqa.errors import InvalidRequest


@dataclass
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    presence_penalty: float = 0.0
    seed: int = -1


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False  # the low end itself is not allowed (top_p > 0)
    integer: bool = False
    note: str = ""

    def admits(self, v: float) -> bool:
        return (v > self.low if self.low_open else v >= self.low) and v <= self.high

    def words(self) -> str:
        return f"{'above' if self.low_open else 'from'} {self.low:g} to {self.high:g}"


RANGES: dict[str, Range] = {
    "temperature": Range(0, 2),
    "top_p": Range(0, 1, low_open=True),
    "top_k": Range(0, 1000, integer=True, note="0: no top-k cut"),
    "min_p": Range(0, 1),
    "presence_penalty": Range(0, 2),
    "seed": Range(-1, 2**32 - 1, integer=True, note="-1: a random seed"),
}

# Sampling presets (Qwen's recommendations for the 2507 models); other models get the Instruct one.
PRESETS: dict[str, dict[str, float]] = {
    "instruct": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0, "presence_penalty": 0.0},
    "thinking": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "presence_penalty": 0.0},
}
GREEDY: dict[str, float] = {"temperature": 0.0, "top_p": 1.0, "top_k": 40, "min_p": 0.0, "presence_penalty": 0.0}
NAMED: dict[str, dict[str, float]] = {"instruct": PRESETS["instruct"], "thinking": PRESETS["thinking"],
                                      "greedy": GREEDY}
# vendor -> default for answering from documents; a vendor absent here uses "default"
DOCUMENTS: dict[str, dict[str, float] | None] = {
    "qwen": None,  # None: the model's own chat preset (Qwen's Instruct or Thinking recommendation)
    "default": GREEDY,  # measured on SmolLM2-135M (llama architecture), see the module docstring
}


def chat_preset(family: str) -> dict[str, float]:
    """The chat preset of a model that reasons as `family` (thinking | hybrid | instruct)."""
    return PRESETS["thinking" if family == "thinking" else "instruct"]


def document_sampling(vendor: str, family: str, preset: object = None) -> dict[str, float]:
    """The sampling a question starts from: the named preset, or the vendor's default."""
    if preset is not None:
        if preset == "documents":
            return document_sampling(vendor, family)
        if not isinstance(preset, str) or preset not in NAMED:
            raise InvalidRequest(f"Unknown sampling preset {preset!r}; use one of documents, "
                                 f"{', '.join(NAMED)}.")
        return dict(NAMED[preset])
    chosen = DOCUMENTS.get(vendor, DOCUMENTS["default"])
    return dict(chat_preset(family) if chosen is None else chosen)


def choose(vendor: str, family: str, overrides: dict[str, float | str], seed: int) -> Sampling:
    """A question's sampling: the vendor's default for answering from documents, or the named `preset`,
    then each option the question sets, each checked against RANGES (the one check)."""
    unknown = set(overrides) - set(RANGES) - {"preset"}
    if unknown:
        raise InvalidRequest(f"Unknown sampling option(s): {', '.join(sorted(unknown))}.")
    options = dict(overrides)
    base = document_sampling(vendor, family, options.pop("preset", None))
    for name, v in options.items():
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise InvalidRequest(f"The sampling option {name} must be a number (got {v!r}); only preset is a name.")
        r = RANGES[name]
        if v != v or not r.admits(v):  # NaN admits nothing
            raise InvalidRequest(f"The sampling option {name} must be {r.words()} (got {v!r}).", option=name)
        if r.integer and v != int(v):
            raise InvalidRequest(f"The sampling option {name} must be a whole number (got {v!r}).", option=name)
    values: dict[str, float] = {**base, "seed": seed}
    values.update((k, float(v)) for k, v in options.items() if not isinstance(v, str))
    return Sampling(temperature=float(values["temperature"]), top_p=float(values["top_p"]),
                    top_k=int(values["top_k"]), min_p=float(values["min_p"]),
                    presence_penalty=float(values["presence_penalty"]), seed=int(values["seed"]))
