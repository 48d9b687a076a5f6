"""The local backend: a GGUF run by docqa's own runner process (runtime.py, runner.py).

It owns what only a local model has: the vocabulary read from the GGUF (exact counts, the chat
template, BOS/EOS), the KV budget manager (budget.py: the bytes each layout needs against the
memory available, and the ladder), the context configuration each job runs in, and the prefix
snapshots keyed by everything that makes a state valid (state_cache.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from docqa.engine.backend import Capabilities, Pieces, PlanNeeds, Request, Slot
from docqa.engine.budget import CACHE_TYPES, Memory, Plan, PlanRequest, make_plan, probe_memory
from docqa.engine.models import ModelSpec
from docqa.engine.runtime import YIELD_SLICE, Job, Place, Runtime
from docqa.engine.state_cache import ContextConfig, state_key
from docqa.engine.template import ChatTemplate, tokenize_pieces
from docqa.engine.work import Generation
from docqa.settings import Settings


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
        bos = vocab._model.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        eos = vocab._model.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
        return ChatTemplate(self.spec.info.chat_template if self.spec.info else None, bos, eos)

    def tokenize(self, pieces: Pieces, *, add_bos: bool) -> list[int]:
        vocab = self.spec.vocab()
        bos = add_bos and bool(vocab._model.add_bos_token())
        return tokenize_pieces(vocab, pieces, add_bos=bos, bos_text=self.template().bos_text if bos else "")

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

    def degrade(self, plan: Plan) -> Plan | None:
        order = list(CACHE_TYPES)
        if plan.type_k == order[-1]:
            return None
        ct = order[order.index(plan.type_k) + 1]
        assert self.spec.shape is not None
        return replace(plan, type_k=ct, type_v=ct, flash_attn=True,
                       kv_bytes=self.spec.shape.kv_bytes(plan.n_ctx, ct, ct),
                       reason=f"{plan.reason}; fell back to {ct} KV after an allocation failure")

    def prefix_key(self, plan: Plan, prefix: list[int]) -> str | None:
        """The state-cache key of a whole-document plan's prefix (what the runner snapshots it under)."""
        return state_key(self.spec.identity, self.config(plan.n_ctx, plan.type_k, plan.flash_attn, plan.yarn_factor),
                         prefix)

    def config(self, n_ctx: int, ct: str, flash: bool, yarn: float | None) -> ContextConfig:
        assert self.spec.shape is not None
        return ContextConfig(n_ctx=n_ctx, type_k=ct, type_v=ct, flash_attn=flash, yarn_factor=yarn,
                             n_ctx_train=self.spec.shape.n_ctx_train, n_batch=self.settings.n_batch,
                             n_ubatch=self.settings.n_batch)

    # -- running ------------------------------------------------------------------------------------

    def reserve(self, klass: str = "interactive", principal: str = "") -> Place:
        return self.runtime.reserve(klass, principal)

    def generate(self, request: Request, slot: Slot) -> tuple[Generation, float]:
        import time

        p = request.plan
        config = self.config(request.n_ctx, p.type_k, p.flash_attn, p.yarn_factor if request.yarn else None)
        job = Job(
            config=config, prefix=request.prefix, suffix=request.suffix,
            state_key=state_key(self.spec.identity, config, request.prefix), max_tokens=request.max_tokens,
            sampling=request.sampling, start_in_thinking=request.start_in_thinking, cancel=request.cancel,
            on_progress=request.on_progress, on_token=request.on_token,
            # work that may have to yield reads in short slices: a question waits for at most one
            slice_tokens=YIELD_SLICE if getattr(slot, "klass", "interactive") != "interactive" else 0,
        )
        submitted = time.perf_counter()
        started: list[float] = []

        def timed(j: Job) -> Generation:
            started.append(time.perf_counter())
            return self.runtime._run(j)

        assert isinstance(slot, Place)
        gen = self.runtime.submit(timed, job, place=slot).result()
        return gen, (started[0] - submitted) if started else 0.0

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
