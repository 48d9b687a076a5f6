"""The seam between docqa's engine and whatever runs the model.

The engine (engine.py) plans, lays out prompts, chunks, cites and grounds; a `Backend` runs one
model. Two implement it: `LocalBackend` (local.py: the runner process that owns llama.cpp, with the
KV budget manager and disk snapshots) and `RemoteBackend` (remote.py: one or more llama-server
instances behind one model name). Everything that differs between them is behind this interface,
and what a backend can do is declared in its `Capabilities`, never guessed from its class:

- `kv_budget`: the backend allocates its own contexts, so docqa plans the KV bytes and the ladder
  (local); without it the context is what the server serves, and the plan is made in those terms;
- `prefix_cache`: a second question over the same documents reuses the documents' prefix;
- `state_snapshots`: the prefix state can be written to disk and read back after a restart;
- `progress`: reading the prefix reports tokens done / total as it goes.

What crosses the seam is plain values: token ids (the engine renders the chat template into
trusted and untrusted pieces, and the backend tokenizes each piece with its own tokenizer, so
prefixes stay byte-identical between questions), a `Request` (what to read and generate, how to
sample, where progress and tokens go, the cancel flag) and a `Generation` back (text, thinking,
token counts and timings, `cached_tokens` as the backend itself reports them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from docqa.engine.budget import Plan
from docqa.engine.template import ChatTemplate
from docqa.engine.work import Generation, Sampling

Progress = Callable[[dict[str, Any]], None]
TokenSink = Callable[[str, str], None]  # (kind: "thinking" | "token", text)
Pieces = list[tuple[str, bool]]  # (text, trusted): trusted text may hold special tokens, untrusted never


@dataclass(frozen=True)
class Capabilities:
    kv_budget: bool
    prefix_cache: bool
    state_snapshots: bool
    progress: bool

    def to_dict(self) -> dict[str, bool]:
        return {"kv_budget": self.kv_budget, "prefix_cache": self.prefix_cache,
                "state_snapshots": self.state_snapshots, "progress": self.progress}


@dataclass(frozen=True)
class PlanNeeds:
    """What a plan must make room for, in the model's tokens, and the user's forced mode."""

    model_name: str
    prompt_tokens: int  # instructions + documents with their markers, exact
    question_tokens: int
    answer_tokens: int
    history_tokens: int
    chunk_ctx: int  # DOCQA_CHUNK_CONTEXT
    forced_mode: str | None  # whole | chunked | None


@dataclass
class Request:
    """One read-and-generate job: make `prefix` resident (reused, restored or read), then generate
    after `prefix + suffix`. `plan` says the context it runs in (size, KV type, YaRN: local only)."""

    plan: Plan
    n_ctx: int
    prefix: list[int]
    suffix: list[int]
    max_tokens: int
    sampling: Sampling
    start_in_thinking: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: Progress | None = None
    on_token: TokenSink | None = None
    yarn: bool = True  # False: chunk contexts never stretch (their size is within the trained context)


class Slot(Protocol):
    """A question's place in its model's queue, from acceptance to its end; released exactly once."""

    def release(self) -> None: ...

    def __enter__(self) -> Slot: ...

    def __exit__(self, *_: object) -> None: ...


class Backend(Protocol):
    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def identity(self) -> str:
        """What token counts of this model are cached under (the tokenizer's identity)."""

    @property
    def n_ctx_train(self) -> int | None:
        """The model's trained context (None when the server does not say)."""

    @property
    def served_ctx(self) -> int | None:
        """The context one question can use; None: docqa opens contexts itself (kv_budget)."""

    def template(self) -> ChatTemplate: ...

    def tokenize(self, pieces: Pieces, *, add_bos: bool) -> list[int]:
        """Exact tokens of the pieces with the model's own tokenizer (untrusted text never special)."""

    def count(self, text: str) -> int: ...

    def plan(self, needs: PlanNeeds) -> Plan:
        """The mode and context for `needs`, explained in this backend's terms."""

    def degrade(self, plan: Plan) -> Plan | None:
        """After a failed context allocation: the next cheaper whole-document layout, or None."""

    def prefix_key(self, plan: Plan, prefix: list[int]) -> str | None:
        """The key docqa's own state cache keeps this prefix's snapshot under (None: it keeps none)."""

    def reserve(self, klass: str = "interactive", principal: str = "") -> Slot:
        """A place in the model's queue for one question (or batch item, or read-ahead: its priority
        class, runtime.py), or a refusal now (QueueFull, …)."""

    def generate(self, request: Request, slot: Slot) -> tuple[Generation, float]:
        """Read the prefix (progress, cancel) and stream the answer with thinking split; (result, queue_s)."""

    def health(self) -> dict[str, Any]:
        """What /api/health says of this model: ready or why not, queue, and the backend's own details."""

    def warm(self) -> None:
        """Get ready to answer before any question comes (DOCQA_PRELOAD at start): load the model, or ask
        the servers what they are. Never raises: what fails shows in `health`."""

    def close(self) -> None: ...
