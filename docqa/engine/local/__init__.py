"""The local backend: a GGUF run by docqa's own runner process (runtime.py, runner.py).

It owns what only a local model has: the model file described from its GGUF header and watched
while the service runs (`ModelSpec`), the vocabulary read from it (exact counts, the chat template,
BOS/EOS), the KV budget manager (budget.py: the bytes each layout needs against the memory
available, and the ladder), the context configuration each job runs in, and the prefix snapshots
keyed by everything that makes a state valid (state_cache.py).

A model file that is missing or not a GGUF is still listed, with its error. The file is watched:
models are loaded lazily, so a GGUF deleted, truncated or swapped after start must not reach
llama.cpp (a file truncated under a memory map can kill the process with SIGBUS). `problem()`
compares the file's size and identity with what was read at start — a `stat()` per call, the header
re-hashed only when the inode or mtime changed — and every use of the model refuses with a 503
sentence while the file is not what was described.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from docqa.engine.backend import (
    Capabilities,
    Generation,
    Kind,
    Pieces,
    PlanNeeds,
    PrefixRead,
    Request,
    Resources,
    Ticket,
)
from docqa.engine.budget import CACHE_TYPES, KvLayout, Memory, ModelShape, Plan, PlanRequest, make_plan, probe_memory
from docqa.engine.gguf_meta import GGUFInfo, ModelFileError, read_gguf
from docqa.engine.local.runtime import YIELD_SLICE, Job, Runtime
from docqa.engine.local.state_cache import ContextConfig, StateCache, state_key
from docqa.engine.sampling import Sampling, chat_preset
from docqa.engine.template import ChatTemplate, TokenCache, tokenize_pieces
from docqa.errors import ModelUnavailable
from docqa.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    name: str
    path: Path
    info: GGUFInfo | None = None
    shape: ModelShape | None = None
    identity: str = ""
    error: str | None = None
    _vocab: Any = field(default=None, repr=False)
    _vocab_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # (size, inode, device, mtime_ns) of the file when its header was read; None: not watched
    _stat: tuple[int, int, int, int] | None = field(default=None, repr=False)

    @property
    def family(self) -> str:
        """'thinking' (always reasons), 'hybrid' (/think, /no_think) or 'instruct'."""
        name = (self.info.get("general.name", "") if self.info else "") + " " + self.path.name
        template = (self.info.chat_template or "") if self.info else ""
        if "thinking" in name.lower():
            return "thinking"
        if "<think>" in template and "enable_thinking" in template:
            return "hybrid"
        return "instruct"

    @property
    def preset(self) -> dict[str, float]:
        return chat_preset(self.family)

    @property
    def vendor(self) -> str:
        arch = self.shape.architecture if self.shape else ""
        name = (self.info.get("general.name", "") if self.info else "") + " " + self.path.name
        return "qwen" if arch.startswith("qwen") or "qwen" in name.lower() else "default"

    def open(self, settings: Settings) -> LocalBackend:
        return LocalBackend(self, settings)

    def watch(self) -> None:
        """Remember the file's size and identity as they are now (after its header was read)."""
        st = os.stat(self.path)
        self._stat = (st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns)

    def file_problem(self) -> str | None:
        """Why the model file is no longer the one described at start, or None while it is."""
        if self._stat is None or self.info is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (f"its file {self.path} was removed after docqa started; put it back, "
                    "or point DOCQA_MODEL at another GGUF and restart docqa.")
        except OSError as exc:
            return f"its file {self.path} cannot be read ({exc.strerror or exc})."
        size, ino, dev, mtime = self._stat
        if st.st_size != size:
            return (f"its file {self.path} is now {st.st_size:,} bytes instead of {size:,}: it was truncated or "
                    "replaced after docqa started; restore it, or restart docqa to read the new file.")
        if (st.st_ino, st.st_dev, st.st_mtime_ns) != (ino, dev, mtime):
            try:
                with self.path.open("rb") as fh:
                    header = fh.read(self.info.header_bytes)
            except OSError as exc:
                return f"its file {self.path} cannot be read ({exc.strerror or exc})."
            if _identity(header, self.info.size_bytes) != self.identity:
                return (f"its file {self.path} was replaced by a different model after docqa started; "
                        "restart docqa to use it.")
            self._stat = (st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns)  # touched or copied back: the same
        return None

    def problem(self) -> str | None:
        """The reason this model cannot be used now (a load error or a changed file), or None."""
        return self.error or self.file_problem()

    def require(self) -> ModelSpec:
        problem = self.problem()
        if problem or self.info is None or self.shape is None:
            raise ModelUnavailable(f"The model {self.name!r} cannot be used: {problem}")
        return self

    def vocab(self) -> Any:
        """A vocabulary-only llama.cpp model: exact token counts without weights or a context."""
        with self._vocab_lock:
            if self._vocab is None:
                self.require()
                try:
                    self._vocab = Llama(str(self.path), vocab_only=True, verbose=False)
                except ValueError as exc:  # llama.cpp could not read it after all; the reason is in its log
                    raise ModelUnavailable(
                        f"The model {self.name!r} cannot be used: llama.cpp could not read {self.path.name} ({exc})."
                    ) from exc
            return self._vocab

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": str(self.path), "error": self.problem(), "backend": "local"}
        if self.shape and self.info:
            out.update(
                architecture=self.shape.architecture,
                n_ctx_train=self.shape.n_ctx_train,
                n_layer=self.shape.n_layer,
                n_head_kv=self.shape.n_head_kv,
                head_dim=self.shape.key_length,
                n_vocab=self.shape.n_vocab,
                size_bytes=self.shape.weights_bytes,
                family=self.family,
                kv_bytes_per_token={ct: self.shape.kv_bytes_per_token(ct, ct) for ct in CACHE_TYPES},
                sampling=self.preset,
                parameters=self.info.n_params or None,
                size_label=self.info.get("general.size_label"),
                quantization=self.info.quantization,
                display_name=self.info.get("general.name"),
            )
        return out


def load_spec(name: str, path: Path, info: GGUFInfo | None = None) -> ModelSpec:
    """The model at `path` described from its header (`info`: already read, e.g. by discovery)."""
    spec = ModelSpec(name=name, path=path)
    try:
        spec.info = info or read_gguf(path)
        spec.shape = ModelShape.from_gguf(spec.info)
        with path.open("rb") as fh:
            header = fh.read(spec.info.header_bytes)
        spec.identity = _identity(header, spec.info.size_bytes)
        spec.watch()
    except ModelFileError as exc:
        spec.error = exc.detail
    except OSError as exc:
        spec.error = f"The model file {path} cannot be read ({exc.strerror or exc})."
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        spec.error = f"{path.name} lacks the metadata docqa needs ({exc})."
    return spec


def _identity(header: bytes, size_bytes: int) -> str:
    return hashlib.sha256(header + str(size_bytes).encode()).hexdigest()


def _spec(name: str, targets: list[str], settings: Settings) -> ModelSpec:
    """DOCQA_MODELS's NAME=PATH (the last path given for a name wins)."""
    spec = load_spec(name, Path(targets[-1]).expanduser())
    if spec.error:
        log.error("model %s: %s", name, spec.error)
    return spec


KIND = Kind(name="local", claims=lambda target: True, spec=_spec)


class LocalBackend:
    capabilities = Capabilities(kv_budget=True, prefix_cache=True, state_snapshots=True, progress=True)

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        s = settings
        self.runtime = Runtime(
            spec, s.state_dir, s.state_cache_bytes, queue_size=s.queue_size, n_threads=s.n_threads,
            use_mmap=s.mmap, extra_buffers=s.extra_buffers, keep_alive_s=s.model_keep_alive,
            snapshot_stop_wait_s=s.snapshot_stop_wait,
        )
        self.cache = StateCache(s.state_dir, s.state_cache_bytes)  # what the runner wrote (read here, never written)
        self.cache.sweep()  # what a crash mid-save left behind (the engine did this at start before the seam)
        self._template: ChatTemplate | None = None
        self._prefixes: TokenCache[str] = TokenCache()  # rendered prefix -> its tokens

    @property
    def identity(self) -> str:
        return self.spec.identity

    @property
    def n_ctx_train(self) -> int | None:
        return self.spec.shape.n_ctx_train if self.spec.shape else None

    @property
    def served_ctx(self) -> int | None:
        return None

    # -- tokens -------------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        vocab = self.spec.vocab()
        if self._template is None:
            bos = vocab._model.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
            eos = vocab._model.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
            self._template = ChatTemplate(self.spec.info.chat_template if self.spec.info else None, bos, eos)
        return self._template

    def tokenize(self, pieces: Pieces, *, add_bos: bool) -> list[int]:
        vocab = self.spec.vocab()
        bos = add_bos and bool(vocab._model.add_bos_token())
        key = None
        if add_bos:  # a prefix (the documents' piece ends it): kept, since every question of a set has the same
            h = hashlib.sha256()
            for text, trusted in pieces:
                h.update(b"T" if trusted else b"U")
                h.update(len(text).to_bytes(8, "little"))
                h.update(text.encode("utf-8", "surrogatepass"))
            key = h.hexdigest()
            found = self._prefixes.get(key)
            if found is not None:
                return list(found)
        tokens = tokenize_pieces(vocab, pieces, add_bos=bos, bos_text=self.template().bos_text if bos else "")
        if key is not None:
            self._prefixes.put(key, tokens)
        return tokens

    def count(self, text: str) -> int:
        return len(self.spec.vocab().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- planning -----------------------------------------------------------------------------------

    def plan(self, needs: PlanNeeds) -> Plan:
        s = self.settings
        assert self.spec.shape is not None
        return make_plan(PlanRequest(
            model_name=needs.model_name, shape=self.spec.shape, prompt_tokens=needs.prompt_tokens,
            question_tokens=needs.question_tokens, answer_tokens=needs.answer_tokens,
            history_tokens=needs.history_tokens, memory=self.memory(), margin_bytes=s.memory_margin,
            n_ubatch=s.n_batch, max_ctx=s.max_context, max_yarn_factor=s.max_yarn_factor, chunk_ctx=needs.chunk_ctx,
            forced_mode=needs.forced_mode, flash_attn=s.flash_attn,
            cache_types=tuple(t.strip() for t in s.kv_types.split(",") if t.strip()),
        ))

    def memory(self) -> Memory:
        """The memory probe, counting this model's loaded runner as free: planning a new context for it
        replaces the one it holds (its private memory is given back first), while other models' runners
        stay loaded and are already missing from MemAvailable and the cgroup's free bytes."""
        memory = probe_memory(self.settings.memory_budget)
        held = self.runtime.resident_bytes()
        if not held:
            return memory
        grow = lambda v: None if v is None else v + held  # noqa: E731
        cgroup, available = grow(memory.cgroup), grow(memory.mem_available)
        values = [v for v in (memory.budget, cgroup, available) if v is not None]
        return replace(memory, available=min(values), cgroup=cgroup, mem_available=available)

    def resources(self) -> Resources:
        return Resources(memory=self.memory(), resident_bytes=self.runtime.resident_bytes())

    def degrade(self, plan: Plan) -> Plan | None:
        kv = _layout(plan)
        order = list(CACHE_TYPES)
        if kv.type_k == order[-1]:
            return None
        ct = order[order.index(kv.type_k) + 1]
        assert self.spec.shape is not None
        return replace(plan, kv=replace(kv, type_k=ct, type_v=ct, flash_attn=True,
                                        kv_bytes=self.spec.shape.kv_bytes(plan.n_ctx, ct, ct)),
                       reason=f"{plan.reason}; fell back to {ct} KV after an allocation failure")

    def config(self, plan: Plan, n_ctx: int | None = None, *, yarn: bool = True) -> ContextConfig:
        """The context a job of `plan` runs in: the plan's (n_ctx None) or a chunk's, stretched or not."""
        kv = _layout(plan)
        assert self.spec.shape is not None
        return ContextConfig(n_ctx=n_ctx or plan.n_ctx, type_k=kv.type_k, type_v=kv.type_v, flash_attn=kv.flash_attn,
                             yarn_factor=kv.yarn_factor if yarn else None, n_ctx_train=self.spec.shape.n_ctx_train,
                             n_batch=self.settings.n_batch, n_ubatch=self.settings.n_batch)

    def holds(self, plan: Plan, n_ctx: int, prefix: list[int], *, yarn: bool = True) -> bool:
        return self.cache.has(state_key(self.spec.identity, self.config(plan, n_ctx, yarn=yarn), prefix))

    # -- running ------------------------------------------------------------------------------------

    def reserve(self, klass: str = "interactive", principal: str = "") -> Ticket:
        return self.runtime.reserve(klass, principal)

    def generate(self, request: Request, ticket: Ticket) -> tuple[Generation, float]:
        config = self.config(request.plan, request.n_ctx, yarn=request.yarn)
        job = Job(
            config=config, prefix=request.prefix, suffix=request.suffix,
            state_key=state_key(self.spec.identity, config, request.prefix), max_tokens=request.max_tokens,
            sampling=request.sampling, start_in_thinking=request.start_in_thinking, cancel=request.cancel,
            on_progress=request.on_progress, on_token=request.on_token,
            # work that may have to yield reads in short slices: a question waits for at most one
            slice_tokens=YIELD_SLICE if ticket.klass != "interactive" else 0,
        )
        submitted = time.perf_counter()
        gen = self.runtime.run(job, ticket).result()
        return gen, (job.started - submitted) if job.started else 0.0

    def read_ahead(self, read: PrefixRead, ticket: Ticket) -> int:
        config = self.config(read.plan, read.n_ctx, yarn=read.yarn)
        limit = read.limit if 0 < read.limit < len(read.prefix) else 0
        job = Job(
            config=config, prefix=read.prefix, suffix=[], state_key=state_key(self.spec.identity, config, read.prefix),
            max_tokens=0, sampling=Sampling(), stream=False, progress=read.on_progress is not None,
            read_ahead=True, read_limit=limit, slice_tokens=YIELD_SLICE, evict_before=read.evict_before,
            cancel=read.cancel, on_progress=read.on_progress, on_yield=read.on_yield,
        )
        self.runtime.run(job, ticket).result()
        return limit or len(read.prefix)

    def warm(self) -> None:
        self.runtime.preload()

    def health(self) -> dict[str, Any]:
        """Ready or why not (checked now, so a model file that vanished or was truncated after start shows
        here), and its queue: state (idle, busy or unavailable), running, waiting, queue_depth (running +
        waiting) and queue_size."""
        problem = self.spec.problem()
        status = self.runtime.status()
        if problem:
            status["state"] = "unavailable"
        return {"ready": problem is None, "error": problem, "backend": "local", **status}

    def close(self) -> None:
        self.runtime.close()


def _layout(plan: Plan) -> KvLayout:
    if plan.kv is None:
        raise ValueError(f"a plan without a KV layout ({plan.backend}) cannot run on a local model")
    return plan.kv


__all__ = ["KIND", "LocalBackend", "ModelSpec", "load_spec"]
