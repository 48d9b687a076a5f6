"""The KV-cache budget manager: decide, before anything is allocated, how a document set is read.

llama.cpp allocates the whole KV cache when a context is created. On a host that overcommits
memory a context that does not fit may not fail cleanly (the process is OOM-killed later), so the
plan has to be right beforehand. The arithmetic mirrors llama.cpp's:

* the context is padded up to a multiple of 256 cells;
* per cell and layer the cache holds one K row of `key_length × head_count_kv` values and one V
  row of `value_length × head_count_kv` values; a row of n values takes 2n bytes in f16,
  34·n/32 in q8_0 and 18·n/32 in q4_0 (32-value blocks), and a quantized V cache needs flash
  attention;
* the compute buffer is dominated by the logits (`n_ubatch × n_vocab × 4`) and, without flash
  attention, by the attention scores (`n_ctx × n_ubatch × n_head × 4`).

Memory available is the smallest of the configured budget, the cgroup limit less its usage, and
`MemAvailable`, less the weights, the compute buffer and a safety margin. The ladder below is
tried in order and every step is reported, so the user sees why a mode was chosen:

1. whole document, f16 KV, native context;  2. the same stretched with YaRN when the context
exceeds the trained one;  3. q8_0, then q4_0 KV (flash attention on);  4. chunked map-reduce
with contexts of `chunk_context` tokens;  5. refuse, naming needed and available bytes.
A forced mode that does not fit is refused with the numbers; nothing is silently truncated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from docqa.engine.gguf_meta import GGUFInfo
from docqa.errors import ContextBudgetExceeded  # noqa: F401 - re-exported (callers found it here)

CTX_PAD = 256
GIB = 1024**3
CACHE_TYPES = ("f16", "q8_0", "q4_0")




def row_bytes(cache_type: str, n_values: int) -> int:
    if cache_type == "f16":
        return 2 * n_values
    if cache_type == "f32":
        return 4 * n_values
    blocks = math.ceil(n_values / 32)
    if cache_type == "q8_0":
        return 34 * blocks
    if cache_type == "q4_0":
        return 18 * blocks
    raise ValueError(f"unknown cache type {cache_type!r}")


def pad_ctx(n: int) -> int:
    return max(CTX_PAD, math.ceil(n / CTX_PAD) * CTX_PAD)


@dataclass(frozen=True)
class ModelShape:
    """What the arithmetic needs to know about a model, read from its GGUF header."""

    architecture: str
    n_layer: int
    n_ctx_train: int
    n_embd: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_vocab: int
    weights_bytes: int

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> ModelShape:
        n_embd = int(info.arch("embedding_length"))
        n_head = _first(info.arch("attention.head_count"))
        n_head_kv = _first(info.arch("attention.head_count_kv", n_head))
        head_dim = n_embd // n_head if n_head else 0
        return cls(
            architecture=info.architecture,
            n_layer=int(info.arch("block_count")),
            n_ctx_train=int(info.arch("context_length", 2048)),
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            key_length=int(info.arch("attention.key_length", head_dim)),
            value_length=int(info.arch("attention.value_length", head_dim)),
            n_vocab=info.n_vocab,
            weights_bytes=info.size_bytes,
        )

    def kv_bytes_per_token(self, type_k: str = "f16", type_v: str = "f16") -> int:
        k = row_bytes(type_k, self.key_length * self.n_head_kv)
        v = row_bytes(type_v, self.value_length * self.n_head_kv)
        return self.n_layer * (k + v)

    def kv_bytes(self, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> int:
        return pad_ctx(n_ctx) * self.kv_bytes_per_token(type_k, type_v)

    def compute_bytes(self, n_ctx: int, n_ubatch: int, flash_attn: bool) -> int:
        """Compute + output buffers as llama.cpp's scheduler reserves them (fitted to its log on
        SmolLM2: exact with flash attention and f16 KV, within 1% otherwise, except for a few sizes
        where ggml's allocator fragments by a few MiB, left to the safety margin).

        llama-cpp-python and llama.cpp clamp the batch to the context, so a context smaller than
        `n_ubatch` reserves for a batch of `n_ctx` tokens."""
        n_ubatch = max(1, min(n_ubatch, n_ctx))
        output = self.n_vocab * 4
        logits = n_ubatch * (self.n_vocab + 2 * self.n_embd) * 4
        if flash_attn:
            return output + logits
        scores = pad_ctx(n_ctx) * n_ubatch * (self.n_head + 1) * 4 + n_ubatch * self.n_embd * 4 * 6
        return output + max(logits, scores)


def _first(v: Any) -> int:
    if isinstance(v, list):
        return int(max(v))
    return int(v or 0)


@dataclass
class Memory:
    """Bytes docqa may use for one context (weights + KV + compute), and where the figure came from."""

    available: int
    budget: int | None
    cgroup: int | None
    mem_available: int | None

    @property
    def source(self) -> str:
        candidates = {
            "DOCQA_MEMORY_BUDGET": self.budget, "cgroup limit": self.cgroup, "MemAvailable": self.mem_available,
        }
        known = [(v, k) for k, v in candidates.items() if v is not None]
        return min(known)[1] if known else "default (no budget, cgroup limit or MemAvailable found)"


def probe_memory(budget: int | None, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> Memory:
    mem_available = _meminfo_available(proc / "meminfo")
    cgroup = _cgroup_free(cgroup_root)
    values = [v for v in (budget, cgroup, mem_available) if v is not None]
    return Memory(min(values) if values else 8 * GIB, budget, cgroup, mem_available)


def _meminfo_available(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_CGROUP_V1_UNLIMITED = 1 << 60  # v1 reports "no limit" as a huge page-rounded number


def _cgroup_free(root: Path) -> int | None:
    """The limit less the usage of the cgroup mounted at `root`: v2 (memory.max, memory.current),
    else v1 (memory/memory.limit_in_bytes, memory/memory.usage_in_bytes)."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
            if limit == "max" or int(limit) >= _CGROUP_V1_UNLIMITED:
                return None
            return max(0, int(limit) - usage)
        except (OSError, ValueError):
            continue
    return None


@dataclass
class Step:
    name: str
    n_ctx: int
    type_k: str
    type_v: str
    yarn_factor: float | None
    needed_bytes: int
    fits: bool
    note: str = ""


@dataclass
class KvLayout:
    """How a local context is laid out in memory: the arithmetic above, for the chosen step."""

    type_k: str
    type_v: str
    flash_attn: bool
    yarn_factor: float | None
    kv_bytes: int
    kv_bytes_per_token: int
    compute_bytes: int
    weights_bytes: int
    margin_bytes: int
    available_bytes: int
    memory_source: str

    @property
    def needed_bytes(self) -> int:
        return self.kv_bytes + self.compute_bytes + self.weights_bytes + self.margin_bytes


@dataclass
class ServedContext:
    """What a server gives one question: the context of one of its slots (the smallest over the servers
    in rotation, since a question may fail over to any), and which servers those are."""

    served_ctx: int
    servers: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """How a document set is read: the common fields, and either the local KV layout docqa allocates
    (`kv`) or the context a server serves (`served`), never both."""

    mode: str  # whole | chunked
    reason: str
    model: str
    prompt_tokens: int
    question_tokens: int
    answer_tokens: int
    n_ctx: int
    n_ctx_train: int
    n_chunks: int = 1
    chunk_ctx: int | None = None
    steps: list[Step] = field(default_factory=list)
    history_tokens: int = 0  # room reserved for a conversation's earlier turns (oldest dropped past it)
    kv: KvLayout | None = None
    served: ServedContext | None = None

    @property
    def backend(self) -> str:
        """local: KV bytes and the ladder; remote: the served context (the reason says it)."""
        return "local" if self.kv is not None else "remote"

    def to_dict(self) -> dict[str, Any]:
        """Flat, as the API has always shown it: the common fields, then the layout's or the served
        context's own (a remote plan has no KV bytes to show, so it shows none)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("kv", "served")}
        d["backend"] = self.backend
        if self.kv is not None:
            d.update(asdict(self.kv), needed_bytes=self.kv.needed_bytes)
        if self.served is not None:
            d.update(asdict(self.served))
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A plan as `to_dict` stored it (a session's, a batch's), including those stored before the
        layout had a type of its own (a remote one then said type_k "server" and 0 bytes)."""
        common = {f.name for f in fields(cls)} - {"kv", "served", "steps"}
        plan = cls(**{k: v for k, v in d.items() if k in common},
                   steps=[Step(**s) for s in d.get("steps", [])])
        if d.get("backend", "local") == "local" and "type_k" in d:
            plan.kv = KvLayout(**{f.name: d[f.name] for f in fields(KvLayout)})
        elif d.get("backend") == "remote":
            plan.served = ServedContext(int(d.get("served_ctx") or d["n_ctx"]), list(d.get("servers") or []))
        return plan

    def summary(self) -> str:
        kv = self.kv
        if kv is None:
            return self.reason
        gb = lambda b: f"{b / GIB:.1f} GB" if b >= GIB / 10 else f"{b / 1024**2:.0f} MB"  # noqa: E731
        if self.mode == "whole":
            yarn = f", YaRN ×{kv.yarn_factor:g}" if kv.yarn_factor else ""
            return (
                f"whole document, {self.prompt_tokens:,} tokens in a {self.n_ctx:,}-token context{yarn}, "
                f"KV {gb(kv.kv_bytes)} ({kv.type_k}) of {gb(kv.available_bytes)} available"
            )
        chunks = f"{self.n_chunks} chunk{'' if self.n_chunks == 1 else 's'}"
        return f"chunked: {chunks} of {self.chunk_ctx:,} tokens — {self.reason}"


@dataclass(frozen=True)
class PlanRequest:
    model_name: str
    shape: ModelShape
    prompt_tokens: int  # instructions + documents with markers, exact, in the model's tokens
    question_tokens: int  # budget for the question and its template
    answer_tokens: int  # budget for the answer (and thinking)
    memory: Memory
    margin_bytes: int = 256 * 1024**2
    n_ubatch: int = 512
    max_ctx: int = 262_144
    max_yarn_factor: float = 8.0
    chunk_ctx: int = 32_768
    forced_mode: str | None = None  # whole | chunked | None
    flash_attn: bool | None = None  # None: auto (`flash_for`); quantized V needs it regardless
    cache_types: tuple[str, ...] = CACHE_TYPES
    history_tokens: int = 0  # budget for a conversation's earlier turns, after the documents


# Auto flash attention: off while the attention scores it would need instead fit in this much memory.
# On this CPU (2 cores, SmolLM2, `python -m bench.run flash` → bench/results/flash.json) llama.cpp's
# flash-attention kernel lost everywhere: without it a 3,800-token lease read 1.09× faster, a 17-token
# question after it was evaluated 1.7× faster and 16 answer tokens 1.1×; at 7,616 tokens 1.13×, 5.1× and
# 1.7×. Without it the scores buffer grows with the context (n_ctx × n_ubatch × heads × 4 bytes), so a
# long context keeps it on and its compute buffer stays small.
FLASH_OFF_MAX_COMPUTE = 512 * 1024**2


def flash_for(req: PlanRequest, n_ctx: int, ct: str) -> bool:
    """Flash attention for a context of `n_ctx` tokens and `ct` KV: required for a quantized V cache, as
    DOCQA_FLASH_ATTN says when set, else off while its alternative's compute buffer stays small."""
    if ct != "f16":
        return True
    if req.flash_attn is not None:
        return req.flash_attn
    return req.shape.compute_bytes(n_ctx, req.n_ubatch, False) > FLASH_OFF_MAX_COMPUTE


def yarn_factor_for(n_ctx: int, n_ctx_train: int) -> float | None:
    """None within the trained context (static YaRN degrades short inputs); else the power of two."""
    if n_ctx <= n_ctx_train:
        return None
    return float(2 ** math.ceil(math.log2(n_ctx / n_ctx_train)))


def make_plan(req: PlanRequest) -> Plan:
    s = req.shape
    n_ctx = pad_ctx(req.prompt_tokens + req.question_tokens + req.history_tokens + req.answer_tokens)
    yarn = yarn_factor_for(n_ctx, s.n_ctx_train)
    steps: list[Step] = []
    fixed = s.weights_bytes + req.margin_bytes
    whole_blocker = ""
    if n_ctx > req.max_ctx:
        whole_blocker = f"{n_ctx:,} tokens exceed the largest context docqa opens ({req.max_ctx:,})"
    elif yarn and yarn > req.max_yarn_factor:
        whole_blocker = (
            f"{n_ctx:,} tokens would need YaRN ×{yarn:g} over the trained {s.n_ctx_train:,}; "
            f"the cap is ×{req.max_yarn_factor:g} (DOCQA_MAX_YARN_FACTOR)"
        )
    if whole_blocker:
        need = s.kv_bytes(n_ctx) + s.compute_bytes(n_ctx, req.n_ubatch, flash_for(req, n_ctx, "f16")) + fixed
        steps.append(Step("whole", n_ctx, "f16", "f16", yarn, need, False, whole_blocker))
    elif req.forced_mode != "chunked":
        for ct in req.cache_types:
            flash = flash_for(req, n_ctx, ct)
            need = s.kv_bytes(n_ctx, ct, ct) + s.compute_bytes(n_ctx, req.n_ubatch, flash) + fixed
            name = "whole" + (" + YaRN" if yarn else "") + f" ({ct} KV)"
            step = Step(name, n_ctx, ct, ct, yarn, need, need <= req.memory.available)
            steps.append(step)
            if step.fits:
                why = "the whole document fits in memory"
                if yarn:
                    why += f", stretched with YaRN ×{yarn:g} beyond the trained {s.n_ctx_train:,} tokens"
                if ct != "f16":
                    why += f"; the KV cache is quantized to {ct} to fit"
                return _plan(req, "whole", why, n_ctx, ct, flash, yarn, steps)
    if req.forced_mode == "whole":
        last = steps[-1]
        if whole_blocker:  # not a question of memory: say why, not a byte count
            message = f"The whole document cannot be read in one context: {whole_blocker}. Use chunked mode."
        else:
            message = (
                f"The whole document does not fit: it needs {last.needed_bytes:,} bytes "
                f"({last.n_ctx:,}-token context, {last.type_k} KV) but {req.memory.available:,} are available. "
                "Use chunked mode or raise DOCQA_MEMORY_BUDGET."
            )
        raise ContextBudgetExceeded(
            message, needed_bytes=last.needed_bytes, available_bytes=req.memory.available, n_ctx=last.n_ctx,
        )
    return _chunked(req, steps, whole_blocker)


def _chunked(req: PlanRequest, steps: list[Step], whole_blocker: str) -> Plan:
    s = req.shape
    chunk_ctx = pad_ctx(min(req.chunk_ctx, s.n_ctx_train))
    # a chunk keeps at most an eighth of its context for the conversation's earlier turns
    history = min(req.history_tokens, chunk_ctx // 8)
    content_per_chunk = chunk_ctx - req.question_tokens - history - req.answer_tokens - 256
    if content_per_chunk < 256:
        raise ContextBudgetExceeded(
            f"A {chunk_ctx:,}-token chunk leaves no room for the document once the question "
            f"({req.question_tokens}) and answer ({req.answer_tokens}) budgets are reserved.",
        )
    n_chunks = max(1, math.ceil(req.prompt_tokens / content_per_chunk))
    fixed = s.weights_bytes + req.margin_bytes
    for ct in req.cache_types:
        flash = flash_for(req, chunk_ctx, ct)
        need = s.kv_bytes(chunk_ctx, ct, ct) + s.compute_bytes(chunk_ctx, req.n_ubatch, flash) + fixed
        step = Step(f"chunked ({ct} KV)", chunk_ctx, ct, ct, None, need, need <= req.memory.available)
        steps.append(step)
        if step.fits:
            if req.forced_mode == "chunked":
                why = "chunked mode was requested"
            elif whole_blocker:
                why = whole_blocker
            else:
                whole = min((st for st in steps if st.name.startswith("whole")), key=lambda st: st.needed_bytes)
                why = (
                    f"not enough memory for one context: the whole document needs {whole.needed_bytes / GIB:.2f} GiB "
                    f"even with {whole.type_k} KV, {req.memory.available / GIB:.2f} GiB available"
                )
            plan = _plan(req, "chunked", why, chunk_ctx, ct, flash, None, steps)
            plan.n_chunks, plan.chunk_ctx, plan.history_tokens = n_chunks, chunk_ctx, history
            return plan
    need = steps[-1].needed_bytes
    raise ContextBudgetExceeded(
        f"Even chunked mode does not fit: one {chunk_ctx:,}-token chunk needs {need:,} bytes "
        f"with the model's {s.weights_bytes:,} bytes of weights, but only {req.memory.available:,} bytes are "
        f"available ({req.memory.source}).",
        needed_bytes=need, available_bytes=req.memory.available,
    )


def _plan(req: PlanRequest, mode: str, reason: str, n_ctx: int, ct: str, flash: bool, yarn: float | None,
          steps: list[Step]) -> Plan:
    s = req.shape
    return Plan(
        mode=mode, reason=reason, model=req.model_name, prompt_tokens=req.prompt_tokens,
        question_tokens=req.question_tokens, answer_tokens=req.answer_tokens, n_ctx=n_ctx,
        n_ctx_train=s.n_ctx_train, steps=steps, history_tokens=req.history_tokens,
        kv=KvLayout(
            type_k=ct, type_v=ct, flash_attn=flash, yarn_factor=yarn, kv_bytes=s.kv_bytes(n_ctx, ct, ct),
            kv_bytes_per_token=s.kv_bytes_per_token(ct, ct), compute_bytes=s.compute_bytes(n_ctx, req.n_ubatch, flash),
            weights_bytes=s.weights_bytes, margin_bytes=req.margin_bytes, available_bytes=req.memory.available,
            memory_source=req.memory.source,
        ),
    )
