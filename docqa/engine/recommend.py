"""Which model, quantization and KV cache type read how long a document on this machine, said before
anyone downloads anything.

Every number comes from the budget manager's own arithmetic (budget.py's `make_plan`, with the
settings the engine plans with): for each (model, quantization, KV type) the longest document read
whole in one context is found by asking `make_plan` with that KV type alone and the whole-document
mode forced (a binary search over 256-token steps), and the memory a given document length needs is
that plan's `needed_bytes` (weights + KV + compute + margin). Where a document is too long to read
whole, the chunked plan is reported instead.

The architecture numbers come from:
* the GGUF header, for a model on disk (the registry's local models, found or configured);
* the hub's copy of the header, for `hf:ORG/REPO` asked about by name: its first megabytes read
  with a range request (nothing else is downloaded), the weights of each quantization from the
  repository's file sizes;
* the table below, for well-known models not on disk, from their config.json (weights estimated
  from the parameter count and llama.cpp's bits per weight).

A remote model answers with its server's served context instead of bytes. The predicted reading
rate is reading.py's, from this server's own measurements of that model, where there are any.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from docqa.engine.budget import CACHE_TYPES, ContextBudgetExceeded, Memory, ModelShape, PlanRequest, make_plan
from docqa.settings import Settings

GB = 1e9
STEP = 256
DEFAULT_TOKENS = 131_072


@dataclass(frozen=True)
class KnownModel:
    """A model's architecture from its config.json, for recommending it before it is downloaded."""

    name: str
    repo: str  # where its GGUFs are (what `docqa pull hf:<repo>:<QUANT>` takes)
    n_params: float
    shape: ModelShape  # weights_bytes 0: estimated per quantization
    source: str


def _shape(arch: str, layers: int, ctx: int, embd: int, heads: int, kv_heads: int, head_dim: int,
           vocab: int) -> ModelShape:
    return ModelShape(arch, layers, ctx, embd, heads, kv_heads, head_dim, head_dim, vocab, 0)


# config.json values (num_hidden_layers, max_position_embeddings, hidden_size, num_attention_heads,
# num_key_value_heads, head_dim, vocab_size) of each model's repository on huggingface.co.
_QWEN3_4B = _shape("qwen3", 36, 262_144, 2560, 32, 8, 128, 151_936)
KNOWN: tuple[KnownModel, ...] = (
    KnownModel("Qwen3-4B-Instruct-2507", "unsloth/Qwen3-4B-Instruct-2507-GGUF", 4.02e9, _QWEN3_4B,
               "https://huggingface.co/Qwen/Qwen3-4B-Instruct-2507/blob/main/config.json"),
    KnownModel("Qwen3-4B-Thinking-2507", "unsloth/Qwen3-4B-Thinking-2507-GGUF", 4.02e9, _QWEN3_4B,
               "https://huggingface.co/Qwen/Qwen3-4B-Thinking-2507/blob/main/config.json"),
    KnownModel("Qwen3-30B-A3B-Instruct-2507", "unsloth/Qwen3-30B-A3B-Instruct-2507-GGUF", 30.5e9,
               _shape("qwen3moe", 48, 262_144, 2048, 32, 4, 128, 151_936),
               "https://huggingface.co/Qwen/Qwen3-30B-A3B-Instruct-2507/blob/main/config.json"),
    # text_config; llama.cpp keeps 5 of every 6 layers in a 1,024-token sliding window, which the budget
    # manager counts as full layers: the bytes said for Gemma 3 are an upper bound
    KnownModel("gemma-3-4b-it", "ggml-org/gemma-3-4b-it-GGUF", 3.88e9,
               _shape("gemma3", 34, 131_072, 2560, 8, 4, 256, 262_208),
               "https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json"),
)

# Bits per weight of llama.cpp's quantizations, from the sizes tools/quantize/quantize.cpp lists for
# Llama-3-8B (8.03e9 parameters: Q4_K_M 4.58 GiB, Q5_K_M 5.33, Q6_K 6.14, Q8_0 7.96, Q4_0 4.34, Q3_K_M 3.74).
BITS_PER_WEIGHT = {"Q3_K_M": 4.00, "Q4_0": 4.64, "Q4_K_M": 4.90, "Q5_K_M": 5.70, "Q6_K": 6.57, "Q8_0": 8.52,
                   "F16": 16.0, "BF16": 16.0}
KNOWN_QUANTS = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")


@dataclass
class Row:
    """One (model, quantization, KV type) on this machine."""

    model: str
    quant: str
    source: str  # on disk | hub header | known table | remote
    weights_bytes: int
    weights_exact: bool
    cache_type: str | None
    longest_whole_tokens: int  # the longest document read whole in one context (0: none)
    tokens: int  # the document length asked about
    needed_bytes: int | None  # what that length needs read whole with this KV type (None: remote)
    fits: bool
    mode: str  # how that length would be read: whole | chunked | refused
    available_bytes: int | None
    reading: dict[str, Any] | None = None  # reading.py's estimate for that length, where measured
    pull: str | None = None  # how to get it
    note: str = ""

    def sentence(self) -> str:
        if self.cache_type is None:
            return f"{self.model}: {self.note}"
        approx = "" if self.weights_exact else "~"
        head = f"{self.model} {self.quant}: {approx}{self.weights_bytes / GB:.1f} GB of weights; "
        length = f"a {self.tokens:,}-token document"
        if self.needed_bytes is None:
            return head + self.note
        need = f"needs {self.needed_bytes / GB:.1f} GB with a {self.cache_type} KV cache"
        avail = f"{(self.available_bytes or 0) / GB:.1f} GB available"
        if self.fits:
            tail = f"fits in {avail}"
        elif self.mode == "chunked":
            tail = f"more than the {avail}: read in chunks instead"
        else:
            tail = f"more than the {avail}"
        longest = f" (the longest read whole: {self.longest_whole_tokens:,} tokens)" if self.longest_whole_tokens \
            else " (no document fits beside these weights)"
        rate = f"; reading it takes about {self.reading['seconds']:,.0f} s ({self.reading['basis']})" \
            if self.reading and self.reading.get("seconds") else ""
        return f"{head}{length} {need}: {tail}{longest}{rate}"

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["sentence"] = self.sentence()
        return out


def _request(settings: Settings, shape: ModelShape, memory: Memory, tokens: int, cache_type: str,
             forced: str | None) -> PlanRequest:
    return PlanRequest(
        model_name="recommend", shape=shape, prompt_tokens=tokens, question_tokens=settings.question_tokens,
        answer_tokens=settings.answer_tokens, history_tokens=settings.history_tokens, memory=memory,
        margin_bytes=settings.memory_margin, n_ubatch=settings.n_batch, max_ctx=settings.max_context,
        max_yarn_factor=settings.max_yarn_factor, chunk_ctx=settings.chunk_context, forced_mode=forced,
        flash_attn=settings.flash_attn, cache_types=(cache_type,),
    )


def needed_whole(settings: Settings, shape: ModelShape, memory: Memory, tokens: int,
                 cache_type: str) -> tuple[int, bool]:
    """(bytes, fits) of reading `tokens` whole with this KV type, as make_plan counts them."""
    try:
        plan = make_plan(_request(settings, shape, memory, tokens, cache_type, "whole"))
        return (plan.kv.needed_bytes if plan.kv else 0), True
    except ContextBudgetExceeded as exc:
        return int(exc.extra.get("needed_bytes") or 0), False


def longest_whole(settings: Settings, shape: ModelShape, memory: Memory, cache_type: str) -> int:
    """The most document tokens (a multiple of 256) make_plan reads whole with this KV type; 0 if none."""
    lo, hi = 0, settings.max_context // STEP
    if not needed_whole(settings, shape, memory, STEP, cache_type)[1]:
        return 0
    lo = 1
    while lo < hi:  # the largest k with k·256 tokens fitting
        mid = (lo + hi + 1) // 2
        if needed_whole(settings, shape, memory, mid * STEP, cache_type)[1]:
            lo = mid
        else:
            hi = mid - 1
    return lo * STEP


def rows_for(settings: Settings, name: str, quant: str, shape: ModelShape, memory: Memory, tokens: int | None,
             source: str, exact: bool, cache_types: tuple[str, ...] | None = None,
             reading: dict[str, Any] | None = None, pull: str | None = None) -> list[Row]:
    asked = max(STEP, tokens or default_tokens(settings, shape))
    out = []
    for ct in cache_types or _kv_types(settings):
        need, fits = needed_whole(settings, shape, memory, asked, ct)
        mode = "whole" if fits else _fallback(settings, shape, memory, asked, ct)
        out.append(Row(name, quant, source, shape.weights_bytes, exact, ct,
                       longest_whole(settings, shape, memory, ct), asked, need, fits, mode, memory.available,
                       reading, pull))
    return out


def default_tokens(settings: Settings, shape: ModelShape) -> int:
    """The length asked about when none is given: 131,072 tokens (a few hundred pages), or the most the model's
    trained context holds beside the question, answer and history budgets."""
    room = min(shape.n_ctx_train, settings.max_context) - settings.question_tokens - settings.answer_tokens \
        - settings.history_tokens
    return min(DEFAULT_TOKENS, room)


def _fallback(settings: Settings, shape: ModelShape, memory: Memory, tokens: int, ct: str) -> str:
    try:
        make_plan(_request(settings, shape, memory, tokens, ct, "chunked"))
        return "chunked"
    except ContextBudgetExceeded:
        return "refused"


def _kv_types(settings: Settings) -> tuple[str, ...]:
    return tuple(t.strip() for t in settings.kv_types.split(",") if t.strip()) or CACHE_TYPES


def known_rows(settings: Settings, memory: Memory, tokens: int | None,
               quants: tuple[str, ...] = KNOWN_QUANTS) -> list[Row]:
    out = []
    for k in KNOWN:
        for q in quants:
            shape = replace(k.shape, weights_bytes=int(k.n_params * BITS_PER_WEIGHT[q] / 8))
            out += rows_for(settings, k.name, q, shape, memory, tokens, "known table", False,
                            pull=f"hf:{k.repo}:{q}")
    return out


def local_rows(settings: Settings, registry: Any, memory: Memory, tokens: int | None,
               rates: Any = None) -> list[Row]:
    """A row per KV type for every usable model on disk; a served context for every remote one."""
    out: list[Row] = []
    for spec in registry.list():
        d = spec.describe()
        if d.get("error"):
            continue
        if d.get("backend") == "remote":
            ctx = max((s.get("n_ctx") or 0 for s in d.get("servers", [])), default=0)
            room = ctx - settings.question_tokens - settings.answer_tokens - settings.history_tokens
            note = (f"served context {ctx:,} tokens: a document up to {room:,} tokens is read whole, a longer one "
                    "in chunks") if ctx else "its servers have not said their context yet"
            out.append(Row(spec.name, "", "remote", 0, True, None, max(room, 0), tokens or max(room, 0), None,
                           bool(ctx) and (tokens or 0) <= room, "whole", None, note=note))
            continue
        shape = getattr(spec, "shape", None)
        if shape is None:
            continue
        asked = max(STEP, tokens or default_tokens(settings, shape))
        reading = rates.estimate(spec.identity, asked).to_dict() if rates is not None else None
        label = d.get("where") or spec.name
        out += rows_for(settings, label if label == spec.name else f"{spec.name} ({label})",
                        d.get("quantization") or "", shape, memory, tokens, "on disk", True, reading=reading)
    return out


# -- a repository on the hub: its header by range request, its quantizations by file size --------------------


def hub_rows(settings: Settings, text: str, memory: Memory, tokens: int | None,
             env: Mapping[str, str] | None = None) -> list[Row]:
    """Rows for every quantization a hub repository has, its architecture read from one file's header."""
    from docqa.hub import Hub, Ref, resolve, resolve_all

    ref = Ref.parse(text)
    hub = Hub.from_env(env)
    first = resolve(ref, hub)
    shape = hub_shape(first, hub)
    out = []
    groups = resolve_all(ref, hub) if not ref.quant and not ref.filename else [first]
    for g in groups:
        s = replace(shape, weights_bytes=g.total_bytes)
        out += rows_for(settings, ref.repo, g.quant, s, memory, tokens, "hub header", True,
                        pull=f"hf:{ref.repo}:{g.quant}")
    return out


def hub_shape(resolved: Any, hub: Any) -> ModelShape:
    """The architecture from the first megabytes of the resolved file (a Range request; doubled until the
    key/value section is complete, at most 64 MiB)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    from docqa.engine.gguf_meta import ModelFileError, read_gguf_header
    from docqa.errors import HubUnreachable
    from docqa.hub import hub_errors

    f = resolved.files[0]
    url = hf_hub_url(resolved.ref.repo, f.path, revision=resolved.revision, endpoint=hub.endpoint)
    headers = build_hf_headers(token=hub.token if hub.token else None)
    want = 2 * 1024 * 1024
    convert = hub_errors(hub, resolved.ref.repo)
    while True:
        try:
            r = get_session().get(url, headers={**headers, "Range": f"bytes=0-{want - 1}"}, follow_redirects=True)
            r.raise_for_status()
        except Exception as exc:
            raise convert(exc) from exc
        try:
            info = read_gguf_header(r.content, f.path, resolved.total_bytes)
            return ModelShape.from_gguf(info)
        except struct.error:
            if len(r.content) < want or want >= 64 * 1024 * 1024:
                raise HubUnreachable(f"{f.path}'s header is longer than docqa reads ({want:,} bytes).") from None
            want *= 4
        except (ModelFileError, KeyError, TypeError, ValueError) as exc:
            raise HubUnreachable(f"{f.path} on {hub.endpoint} does not start like a GGUF model ({exc}).") from exc


def recommend(settings: Settings, registry: Any, memory: Memory, tokens: int | None = None, rates: Any = None,
              hub_ref: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole answer of `docqa models --recommend` and GET /api/models/recommend."""
    rows = local_rows(settings, registry, memory, tokens, rates)
    rows += hub_rows(settings, hub_ref, memory, tokens, env) if hub_ref else known_rows(settings, memory, tokens)
    return {"available_bytes": memory.available, "memory_source": memory.source, "tokens": tokens,
            "kv_types": list(_kv_types(settings)), "rows": [r.to_dict() for r in rows],
            "sources": {k.name: k.source for k in KNOWN}}
