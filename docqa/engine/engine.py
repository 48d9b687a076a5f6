"""Planning and answering over a set of documents: the engine's use cases.

`Engine.plan()` tokenizes the prompt prefix with the model's own vocabulary and asks the budget
manager for a mode, allocating nothing. `Engine.answer()` runs the plan: whole-document mode puts
the documents in one context (prefix cached, see runtime.py); chunked mode maps the question over
chunks of `chunk_context` tokens, collecting quoted evidence, then reduces it to one answer.
If llama.cpp still fails to allocate a context, the answer falls down the ladder (quantized KV,
then chunked) and says so in its notes; it never takes the service down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from docqa.engine import prompts
from docqa.engine.budget import ContextBudgetExceeded, Plan, PlanRequest, make_plan, probe_memory
from docqa.engine.chunking import Part, pack, parts_of
from docqa.engine.citations import attribute, extract_citations, verbatim_spans
from docqa.engine.models import ModelRegistry, ModelSpec
from docqa.engine.runtime import ContextAllocationFailed, Generation, Job, Place, Runtime, Sampling
from docqa.engine.state_cache import ContextConfig, StateCache, state_key
from docqa.engine.template import ChatTemplate, tokenize_pieces
from docqa.engine.token_counts import TokenCounts
from docqa.errors import InvalidRequest
from docqa.settings import Settings
from docqa.store.models import Document, Section

Sources = list[tuple[Document, list[Section]]]
EventSink = Callable[[str, dict[str, Any]], None]
MAP_ANSWER_TOKENS = 256
EVIDENCE_HEADER = "Evidence quoted from the documents:\n\n"


@dataclass
class AskOptions:
    thinking: bool | None = None
    max_tokens: int | None = None
    sampling: dict[str, float] = field(default_factory=dict)


@dataclass
class Answer:
    answer: str
    thinking: str
    citations: list[dict[str, Any]]
    mode: str
    timings: dict[str, Any]
    coverage: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    stop_reason: str = "eos"

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer, "thinking": self.thinking, "citations": self.citations, "mode": self.mode,
            "timings": self.timings, "coverage": self.coverage, "notes": self.notes, "stop_reason": self.stop_reason,
        }


@dataclass
class _Call:
    """What every job of one question shares: its event sink, its cancel flag, its place in the queue."""

    on_event: EventSink | None
    cancel: threading.Event
    place: Place


class Engine:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = StateCache(settings.state_dir, settings.state_cache_bytes)
        self.counts = TokenCounts(settings.max_set_tokens)  # exact counts per (tokenizer, set), computed once
        self.cache.sweep()  # what a crash mid-save left behind
        self._runtimes: dict[str, Runtime] = {}
        self._lock = threading.Lock()

    def runtime(self, spec: ModelSpec) -> Runtime:
        with self._lock:
            if spec.name not in self._runtimes:
                self._runtimes[spec.name] = Runtime(
                    spec, self.cache, queue_size=self.settings.queue_size, n_threads=self.settings.n_threads,
                    use_mmap=self.settings.mmap,
                )
            return self._runtimes[spec.name]

    def close(self) -> None:
        for rt in self._runtimes.values():
            rt.close()

    def model_health(self, spec: ModelSpec) -> dict[str, Any]:
        """What /api/health reports per model: ready or why not (checked now, so a model file that
        vanished or was truncated after start shows here), and its queue: state (idle, busy or
        unavailable), running, waiting, queue_depth (running + waiting) and queue_size."""
        problem = spec.problem()
        with self._lock:
            rt = self._runtimes.get(spec.name)
        status = rt.status() if rt is not None else {
            "state": "idle", "running": 0, "waiting": 0, "queue_depth": 0, "queue_size": self.settings.queue_size,
            "loaded": False, "avg_job_s": None,
        }
        if problem:
            status["state"] = "unavailable"
        return {"ready": problem is None, "error": problem, **status}

    # -- prompts ------------------------------------------------------------------------------------

    def _template(self, spec: ModelSpec) -> ChatTemplate:
        vocab = spec.vocab()
        bos = vocab._model.token_get_text(vocab.token_bos()) if vocab.token_bos() >= 0 else ""
        eos = vocab._model.token_get_text(vocab.token_eos()) if vocab.token_eos() >= 0 else ""
        return ChatTemplate(spec.info.chat_template if spec.info else None, bos, eos)

    def _tokens(self, spec: ModelSpec, system: str, body: str, question: str,
                thinking: bool | None) -> tuple[list[int], list[int]]:
        """(prefix, suffix): the prefix ends after the documents; the suffix holds the question."""
        template = self._template(spec)
        rendered = template.render(system, [body, prompts.question_text(question)], enable_thinking=thinking)
        pieces = rendered.pieces
        cut = next(i for i, (_, trusted) in enumerate(pieces) if not trusted) + 1  # the documents' piece
        vocab = spec.vocab()
        add_bos = bool(vocab._model.add_bos_token())
        prefix = tokenize_pieces(vocab, pieces[:cut], add_bos=add_bos, bos_text=template.bos_text)
        suffix = tokenize_pieces(vocab, pieces[cut:], add_bos=False, bos_text="")
        return prefix, suffix

    def count(self, spec: ModelSpec, text: str) -> int:
        return len(spec.vocab().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    @staticmethod
    def render_documents(sources: Sources) -> str:
        out = []
        for doc, sections in sources:
            out.append(prompts.document_open(doc))
            out.extend(prompts.render_section(doc, s) for s in sections)
            out.append(prompts.DOCUMENT_CLOSE)
        return "".join(out)

    @staticmethod
    def render_parts(parts: list[Part]) -> str:
        out: list[str] = []
        current: Document | None = None
        for p in parts:
            if current is None or p.document.id != current.id:
                if current is not None:
                    out.append(prompts.DOCUMENT_CLOSE)
                out.append(prompts.document_open(p.document))
                current = p.document
            s = p.section
            marker = f"[page {s.page}]" if s.page is not None else (
                f"[{s.path or p.document.filename}:L{p.line_start}-L{p.line_end}]")
            out.append(f"{marker}\n{p.text}\n")
        if current is not None:
            out.append(prompts.DOCUMENT_CLOSE)
        return "".join(out)

    # -- planning -----------------------------------------------------------------------------------

    def plan(self, spec: ModelSpec, sources: Sources, mode: str | None = None,
             answer_tokens: int | None = None) -> Plan:
        if mode not in (None, "auto", "whole", "chunked"):
            raise InvalidRequest(f"Unknown mode {mode!r}; use 'whole', 'chunked' or leave it out.")
        docs = [d for d, _ in sources]  # counted once per (tokenizer, set): token_counts.py
        prompt_tokens = self.counts.prompt_tokens(spec.identity, docs, lambda: sum(map(len, self._tokens(
            spec, prompts.INSTRUCTIONS, self.render_documents(sources), "", None))))
        s = self.settings
        assert spec.shape is not None
        plan = make_plan(PlanRequest(
            model_name=spec.name, shape=spec.shape, prompt_tokens=prompt_tokens,
            question_tokens=s.question_tokens, answer_tokens=answer_tokens or s.answer_tokens,
            memory=probe_memory(s.memory_budget), margin_bytes=s.memory_margin, n_ubatch=s.n_batch,
            max_ctx=s.max_context, max_yarn_factor=s.max_yarn_factor, chunk_ctx=s.chunk_context,
            forced_mode=None if mode in (None, "auto") else mode,
            flash_attn=True if s.flash_attn is None else s.flash_attn,
            cache_types=tuple(t.strip() for t in s.kv_types.split(",") if t.strip()),
        ))
        if plan.mode == "chunked":  # count the chunks exactly as answering will cut them
            layout = f"{plan.chunk_ctx or plan.n_ctx}:{plan.question_tokens}:{plan.answer_tokens}"
            plan.n_chunks = self.counts.chunks(spec.identity, docs, layout,
                                               lambda: len(self.chunks(spec, plan, sources)))
        return plan

    def config_for(self, spec: ModelSpec, n_ctx: int, ct: str, flash: bool, yarn: float | None) -> ContextConfig:
        assert spec.shape is not None
        return ContextConfig(n_ctx=n_ctx, type_k=ct, type_v=ct, flash_attn=flash, yarn_factor=yarn,
                             n_ctx_train=spec.shape.n_ctx_train, n_batch=self.settings.n_batch,
                             n_ubatch=self.settings.n_batch)

    # -- answering ----------------------------------------------------------------------------------

    def check_question(self, spec: ModelSpec, question: str, opts: AskOptions, plan: Plan) -> None:
        if not question.strip():
            raise InvalidRequest("The question is empty.")
        n = self.count(spec, question)
        if n > self.settings.question_tokens:
            raise InvalidRequest(
                f"The question is {n:,} tokens long; the limit is {self.settings.question_tokens:,} tokens "
                "(DOCQA_QUESTION_TOKENS).", limit=self.settings.question_tokens, tokens=n,
            )
        if opts.max_tokens is not None and not 1 <= opts.max_tokens <= plan.answer_tokens:
            raise InvalidRequest(
                f"max_tokens must be between 1 and {plan.answer_tokens:,}, the answer budget of this session's plan.",
                limit=plan.answer_tokens,
            )

    def sampling(self, spec: ModelSpec, overrides: dict[str, float]) -> Sampling:
        allowed = {"temperature", "top_p", "top_k", "min_p", "presence_penalty", "seed"}
        unknown = set(overrides) - allowed
        if unknown:
            raise InvalidRequest(f"Unknown sampling option(s): {', '.join(sorted(unknown))}.")
        values: dict[str, Any] = {**spec.preset, "seed": self.settings.seed, **overrides}
        if not 0 <= values["temperature"] <= 2 or not 0 <= values["presence_penalty"] <= 2:
            raise InvalidRequest("temperature and presence_penalty must be between 0 and 2.")
        values["top_k"] = int(values["top_k"])
        values["seed"] = int(values["seed"])
        return Sampling(**values)

    def answer(self, spec: ModelSpec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
               on_event: EventSink | None = None, cancel: threading.Event | None = None,
               place: Place | None = None) -> Answer:
        """Answer under the question's `place` in the model's queue (taken here when none is given and
        released here either way), so every job it runs, one per chunk in chunked mode, is accepted."""
        with place or self.runtime(spec).reserve() as held:
            self.check_question(spec, question, opts, plan)
            sampling = self.sampling(spec, opts.sampling)
            max_tokens = opts.max_tokens or plan.answer_tokens
            call = _Call(on_event, cancel or threading.Event(), held)
            notes: list[str] = []
            current = plan
            while True:
                try:
                    run = self._whole if current.mode == "whole" else self._chunked
                    result = run(spec, current, sources, question, opts, sampling, max_tokens, call)
                    result.notes = notes + result.notes
                    return result
                except ContextAllocationFailed as exc:
                    notes.append(f"{exc.detail} Falling back.")
                    current = self._fallback(spec, current, sources, exc)

    def _fallback(self, spec: ModelSpec, plan: Plan, sources: Sources, exc: ContextAllocationFailed) -> Plan:
        from docqa.engine.budget import CACHE_TYPES

        order = list(CACHE_TYPES)
        if plan.type_k != order[-1]:
            ct = order[order.index(plan.type_k) + 1]
            assert spec.shape is not None
            return replace(plan, type_k=ct, type_v=ct, flash_attn=True,
                           kv_bytes=spec.shape.kv_bytes(plan.n_ctx, ct, ct),
                           reason=f"{plan.reason}; fell back to {ct} KV after an allocation failure")
        if plan.mode == "whole":
            chunked = self.plan(spec, sources, "chunked", plan.answer_tokens)
            chunked.reason = "the whole-document context could not be allocated; fell back to chunked mode"
            return chunked
        raise exc

    def _run(self, spec: ModelSpec, config: ContextConfig, prefix: list[int], suffix: list[int], max_tokens: int,
             sampling: Sampling, start_thinking: bool, call: _Call,
             progress_extra: dict[str, Any] | None = None, stream: bool = True) -> tuple[Generation, float]:
        runtime = self.runtime(spec)
        on_event = call.on_event
        job = Job(
            config=config, prefix=prefix, suffix=suffix, state_key=state_key(spec.identity, config, prefix),
            max_tokens=max_tokens, sampling=sampling, start_in_thinking=start_thinking, cancel=call.cancel,
            on_progress=(lambda p: on_event("progress", {**p, **(progress_extra or {})})) if on_event else None,
            on_token=(lambda kind, text: on_event(kind, {"text": text})) if on_event and stream else None,
        )
        submitted = time.perf_counter()
        started: list[float] = []

        def timed(j: Job) -> Generation:
            started.append(time.perf_counter())
            return runtime._run(j)

        gen = runtime.submit(timed, job, place=call.place).result()
        return gen, (started[0] - submitted) if started else 0.0

    def _starts_thinking(self, spec: ModelSpec, opts: AskOptions) -> bool:
        return spec.family == "thinking" or (spec.family == "hybrid" and opts.thinking is not False)

    def _whole(self, spec: ModelSpec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
               sampling: Sampling, max_tokens: int, call: _Call) -> Answer:
        thinking_flag = opts.thinking if spec.family == "hybrid" else None
        prefix, suffix = self._tokens(spec, prompts.INSTRUCTIONS, self.render_documents(sources), question,
                                      thinking_flag)
        config = self.config_for(spec, plan.n_ctx, plan.type_k, plan.flash_attn, plan.yarn_factor)
        gen, queue_s = self._run(spec, config, prefix, suffix, max_tokens, sampling,
                                 self._starts_thinking(spec, opts) and spec.family == "thinking", call)
        return Answer(
            answer=gen.text, thinking=gen.thinking, mode="whole", stop_reason=gen.stop_reason,
            citations=cite(gen.text, sources),
            timings=_timings(gen, queue_s, gen.prefill_tokens, gen.cached_tokens, gen.prefill_s, gen.generate_s,
                             gen.generated_tokens, gen.prefix_source),
        )

    def chunks(self, spec: ModelSpec, plan: Plan, sources: Sources) -> list[list[Part]]:
        overhead_prefix, overhead_suffix = self._tokens(spec, prompts.MAP_INSTRUCTIONS, "", "", None)
        chunk_ctx = plan.chunk_ctx or plan.n_ctx
        budget = chunk_ctx - len(overhead_prefix) - len(overhead_suffix) - plan.question_tokens - max(
            plan.answer_tokens, MAP_ANSWER_TOKENS) - 64 * 2  # markers and document tags
        count = lambda text: self.count(spec, text)  # noqa: E731
        parts = parts_of(sources, count, max(64, budget // 2))
        return pack(parts, budget, self.settings.chunk_overlap)

    def _chunked(self, spec: ModelSpec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
                 sampling: Sampling, max_tokens: int, call: _Call) -> Answer:
        on_event = call.on_event
        chunks = self.chunks(spec, plan, sources)
        config = self.config_for(spec, plan.chunk_ctx or plan.n_ctx, plan.type_k, plan.flash_attn, None)
        evidence: list[str] = []
        contributing: list[int] = []
        totals: dict[str, Any] = {"prefill_tokens": 0, "cached_tokens": 0, "prefill_s": 0.0, "generate_s": 0.0,
                                  "generated": 0, "queue_s": 0.0}
        map_sampling = replace(sampling, temperature=0.0)
        for i, chunk in enumerate(chunks):
            prefix, suffix = self._tokens(spec, prompts.MAP_INSTRUCTIONS, self.render_parts(chunk), question, False
                                          if spec.family == "hybrid" else None)
            gen, queue_s = self._run(spec, config, prefix, suffix, MAP_ANSWER_TOKENS, map_sampling,
                                     spec.family == "thinking", call,
                                     {"chunk": i + 1, "chunks": len(chunks)}, stream=False)
            _accumulate(totals, gen, queue_s)
            # Keep only what the chunk really says: a small model "quotes" things that are not there.
            found = [] if gen.text.strip().upper().startswith("NONE") else _evidence(gen.text, chunk)
            if found:
                evidence.extend(found)
                contributing.append(i + 1)
            if on_event:
                on_event("progress", {"phase": "map", "chunk": i + 1, "chunks": len(chunks), "relevant": bool(found)})
        # The quotes of every chunk go into one context of the same size: keep those that fit.
        evidence, left_out = self._fit_evidence(spec, plan, evidence, max_tokens)
        body = EVIDENCE_HEADER + ("\n\n".join(evidence) if evidence else "(none found)")
        prefix, suffix = self._tokens(spec, prompts.REDUCE_INSTRUCTIONS, body, question,
                                      opts.thinking if spec.family == "hybrid" else None)
        gen, queue_s = self._run(spec, config, prefix, suffix, max_tokens, sampling,
                                 spec.family == "thinking", call)
        _accumulate(totals, gen, queue_s)
        timings = _timings(gen, totals["queue_s"], totals["prefill_tokens"], totals["cached_tokens"],
                           totals["prefill_s"], totals["generate_s"], totals["generated"], "chunked")
        return Answer(
            answer=gen.text, thinking=gen.thinking, mode="chunked", stop_reason=gen.stop_reason,
            citations=cite(gen.text, sources), timings=timings,
            coverage={"chunks_total": len(chunks), "chunks_read": len(chunks), "contributing": contributing},
            notes=[f"{left_out} quoted passage(s) did not fit the final context and were left out."]
            if left_out else [],
        )

    def _fit_evidence(self, spec: ModelSpec, plan: Plan, evidence: list[str], max_tokens: int) -> tuple[list[str], int]:
        """The quotes, each once and in document order, that fit the reduce context beside the
        instructions, the question and the answer; and how many did not (the prompt would not fit)."""
        prefix, suffix = self._tokens(spec, prompts.REDUCE_INSTRUCTIONS, EVIDENCE_HEADER, "", None)
        room = (plan.chunk_ctx or plan.n_ctx) - len(prefix) - len(suffix) - plan.question_tokens - max_tokens
        kept: list[str] = []
        left_out = 0
        for quote in dict.fromkeys(evidence):
            n = self.count(spec, quote + "\n\n")
            if n > room:
                left_out += 1
                continue
            kept.append(quote)
            room -= n
        return kept, left_out


def _evidence(text: str, chunk: list[Part]) -> list[str]:
    out = []
    for part in chunk:
        for quote in verbatim_spans(text, part.text):
            s = part.section
            where = f"page {s.page}" if s.page is not None else f"{s.path or part.document.filename}, lines " \
                f"{part.line_start}-{part.line_end}"
            out.append(f"{part.document.filename}, {where}: {quote}" if s.page is not None else f"{where}: {quote}")
    return out


def cite(text: str, sources: Sources) -> list[dict[str, Any]]:
    found = extract_citations(text, sources) or attribute(text, sources)
    return [c.to_dict() for c in found]


def _accumulate(totals: dict[str, Any], gen: Generation, queue_s: float) -> None:
    totals["prefill_tokens"] += gen.prefill_tokens
    totals["cached_tokens"] += gen.cached_tokens
    totals["prefill_s"] += gen.prefill_s
    totals["generate_s"] += gen.generate_s
    totals["generated"] += gen.generated_tokens
    totals["queue_s"] += queue_s


def _timings(gen: Generation, queue_s: float, prefill_tokens: int, cached: int, prefill_s: float,
             generate_s: float, generated: int, source: str) -> dict[str, Any]:
    return {
        "queue_s": round(queue_s, 3), "prefill_s": round(prefill_s, 3), "prefill_tokens": prefill_tokens,
        "cached_tokens": cached, "generate_s": round(generate_s, 3), "generated_tokens": generated,
        "tokens_per_s": round(generated / generate_s, 2) if generate_s else 0.0, "prefix_source": source,
    }


__all__ = ["Answer", "AskOptions", "ContextBudgetExceeded", "Engine"]
