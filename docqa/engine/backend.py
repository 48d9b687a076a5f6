"""The seam between docqa's engine and whatever runs the model.

The engine (engine.py) plans, lays out prompts, chunks, cites and grounds; a `Backend` runs one
model. Two implement it: `LocalBackend` (local.py: the runner process that owns llama.cpp, with the
KV budget manager and disk snapshots) and `RemoteBackend` (remote.py: one or more llama-server
instances behind one model name). Everything that differs between them is behind this interface,
and what a backend can do is declared in its `Capabilities`, never guessed from its class (no
`isinstance` or `hasattr` above this line):

- `kv_budget`: the backend allocates its own contexts, so docqa plans the KV bytes and the ladder
  (local); without it the context is what the server serves, and the plan is made in those terms;
- `prefix_cache`: a second question over the same documents reuses the documents' prefix;
- `state_snapshots`: the prefix state can be written to disk and read back after a restart;
- `progress`: reading the prefix reports tokens done / total as it goes.

What crosses the seam is plain values: token ids (the engine renders the chat template into
trusted and untrusted pieces, and the backend tokenizes each piece with its own tokenizer, so
prefixes stay byte-identical between questions), a `Request` (what to read and generate, how to
sample, where progress and tokens go, the cancel flag) and a `Generation` back (text, thinking,
token counts and timings, `cached_tokens` as the backend itself reports them). A `PrefixRead`
reads a prefix ahead of any question (read-ahead), at most `limit` tokens of it, on both backends.

The queue: every question, batch item and read-ahead holds one `Ticket` from acceptance to its
end, in a priority class (`CLASSES`) for a principal. A backend gives it out (`reserve`) and takes
it back when its `with` block ends; nothing else releases it.

A new kind of backend is one module that implements `Backend` and a `Spec` (what names and
describes a model), and exports a `Kind` (which DOCQA_MODELS targets it claims, and how it makes
their spec); one line in backends.py registers it (or a `docqa.backends` entry point, for a
plug-in). See backends.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from docqa.engine.budget import Memory, Plan
from docqa.engine.sampling import Sampling
from docqa.engine.template import ChatTemplate
from docqa.settings import Settings


@dataclass
class Generation:
    text: str = ""
    thinking: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    generate_s: float = 0.0
    generated_tokens: int = 0
    prefix_source: str = "none"  # memory | disk | evaluated | read-ahead
    read_ahead_tokens: int = 0  # with prefix_source "read-ahead": how many of the prefix's tokens it had read
    resumed_tokens: int = 0  # tokens this job kept across its yields (read before it gave way, not read again)
    yields: int = 0  # how often it gave the model to higher-priority work
    stop_reason: str = "eos"  # eos | length | loop (the local runner stopped a loop)
    thinking_open: bool = False
    notes: list[str] = field(default_factory=list)  # for the answer's notes (a remote retry on another server)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_s if self.generate_s else 0.0


Progress = Callable[[dict[str, Any]], None]
TokenSink = Callable[[str, str], None]  # (kind: "thinking" | "token", text)
Pieces = list[tuple[str, bool]]  # (text, trusted): trusted text may hold special tokens, untrusted never

# Priority classes, served in this order: a person's question, a batch item, a read-ahead.
CLASSES = ("interactive", "batch", "read_ahead")


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
    after `prefix + suffix`. `plan` says the context it runs in (size, KV layout: local only)."""

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


@dataclass
class PrefixRead:
    """Read a context's prefix before any question asks about it (read-ahead): at most `limit` tokens of
    it (0: all), keeping what was read for the question that comes (the local runner's snapshot, a
    server slot's prompt cache). Nothing is generated."""

    plan: Plan
    n_ctx: int
    prefix: list[int]
    limit: int = 0
    yarn: bool = True
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: Progress | None = None  # tokens_done of this prefix as reading goes
    on_yield: Callable[[], None] | None = None  # it gave the model to higher-priority work (it resumes)
    evict_before: float | None = None  # what it keeps may evict only what was last used before this time


@dataclass(frozen=True)
class Resources:
    """What a backend holds and can use, as /api/health and the planner see it."""

    memory: Memory | None  # what a new context may use (None: the server's own business)
    resident_bytes: int  # private memory held now by this model (a loaded runner); 0 for a server


class Ticket:
    """A question's (or batch item's, or read-ahead's) place in its model's queue, from its acceptance to
    its end, in a priority class for a principal: the one type every backend gives out (`reserve`).

    Released exactly once, when its `with` block ends (however it ends); nothing else releases it, and
    it is never left to the garbage collector. Work run under it is neither counted again nor refused."""

    def __init__(self, klass: str, principal: str, give_back: Callable[[], None]) -> None:
        if klass not in CLASSES:
            raise ValueError(f"unknown priority class {klass!r}")
        self.klass = klass
        self.principal = principal
        self._give_back: Callable[[], None] | None = give_back
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._give_back is not None

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


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

    def holds(self, plan: Plan, n_ctx: int, prefix: list[int], *, yarn: bool = True) -> bool:
        """Whether this prefix is kept already (a snapshot, or read ahead), so a question starts from it."""

    def reserve(self, klass: str = "interactive", principal: str = "") -> Ticket:
        """A place in the model's queue for one question (or batch item, or read-ahead: its priority
        class), or a refusal now (QueueFull, …). Read-ahead tickets are never refused nor counted."""

    def generate(self, request: Request, ticket: Ticket) -> tuple[Generation, float]:
        """Read the prefix (progress, cancel) and stream the answer with thinking split; (result, queue_s)."""

    def read_ahead(self, read: PrefixRead, ticket: Ticket) -> int:
        """Read `read.prefix` (at most `read.limit` tokens) under `ticket` and keep it; the tokens now
        held. Raises Cancelled when `read.cancel` is set."""

    def resources(self) -> Resources: ...

    def health(self) -> dict[str, Any]:
        """What /api/health says of this model: ready or why not, queue, and the backend's own details."""

    def warm(self) -> None:
        """Get ready to answer before any question comes (DOCQA_PRELOAD at start): load the model, or ask
        the servers what they are. Never raises: what fails shows in `health`."""

    def close(self) -> None: ...


class Spec(Protocol):
    """What names and describes a model, whatever runs it; `open()` makes the backend that runs it."""

    name: str

    @property
    def identity(self) -> str: ...  # the tokenizer's identity: token counts and reading rates are kept by it

    @property
    def path(self) -> Path: ...  # a local model's file; a remote one's name (never a server's address)

    @property
    def family(self) -> str: ...  # how it reasons: thinking | hybrid | instruct

    @property
    def vendor(self) -> str: ...  # qwen | default: whose sampling defaults apply (sampling.py)

    @property
    def preset(self) -> dict[str, float]: ...

    def problem(self) -> str | None: ...

    def require(self) -> Spec: ...

    def describe(self) -> dict[str, Any]: ...

    def open(self, settings: Settings) -> Backend: ...


@dataclass(frozen=True)
class Kind:
    """A kind of backend, as registered in backends.py: which DOCQA_MODELS targets (a path, a URL) it
    claims, and the spec of a model name given those targets (a name given several URLs is one model on
    several servers)."""

    name: str
    claims: Callable[[str], bool]
    spec: Callable[[str, list[str], Settings], Spec]
