"""Planning and answering over a set of documents: the engine's use cases.

`Engine.plan()` tokenizes the prompt prefix with the model's own vocabulary and asks the budget
manager for a mode, allocating nothing. `Engine.answer()` runs the plan: whole-document mode puts
the documents in one context (prefix cached, see runtime.py); chunked mode maps the question over
chunks of `chunk_context` tokens, collecting quoted evidence, then reduces it to one answer.
If llama.cpp still fails to allocate a context, the answer falls down the ladder (quantized KV,
then chunked) and says so in its notes; it never takes the service down.

A session's earlier turns go *after* the documents (template.py), so the cached prefix is reused;
they are capped by DOCQA_HISTORY_TURNS and by the room the plan left in the context, oldest
dropped first (said in the notes). Every answer is grounded claim by claim (grounding.py).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from docqa.engine import grounding, loops, prompts
from docqa.engine.backend import Backend, Generation, PlanNeeds, Request, Spec, Ticket
from docqa.engine.budget import ContextBudgetExceeded, Plan
from docqa.engine.chunking import Part, pack, parts_of
from docqa.engine.citations import extract_citations, verbatim_spans
from docqa.engine.grounding import Grounder, Passage
from docqa.engine.models import ModelRegistry
from docqa.engine.sampling import Sampling, choose
from docqa.engine.sources import Document, Sources
from docqa.engine.token_counts import TokenCounts
from docqa.errors import ContextAllocationFailed, DocqaError
from docqa.rules import check_max_tokens, check_mode, check_question_tokens, clean_question
from docqa.settings import Settings

log = logging.getLogger(__name__)
EventSink = Callable[[str, dict[str, Any]], None]
Turn = tuple[str, str]  # an earlier (question, answer) of the conversation
MAP_ANSWER_TOKENS = 256
# Below this many document tokens the search's lines are not shown: the whole document is as near the
# question as they would be, and in the one short case measured (a 2-page scanned PDF, tests/test_formats.py)
# the 135M model answered worse with them (4 phrasings of one question: 4 right without, 0 with).
SEARCH_MIN_TOKENS = 1024
EVIDENCE_HEADER = "Evidence quoted from the documents:\n\n"


@dataclass
class AskOptions:
    thinking: bool | None = None
    max_tokens: int | None = None
    sampling: dict[str, float | str] = field(default_factory=dict)
    history: bool = True  # False: answer as if the conversation had just started
    continue_from: str | None = None  # an answer cut at its limit: generate on from its last word


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
    claims: list[dict[str, Any]] = field(default_factory=list)  # grounding.Claim.to_dict(), in answer order
    grounding: dict[str, Any] = field(default_factory=dict)  # grounding.summary() + the method that judged
    history: dict[str, Any] = field(default_factory=dict)  # {"turns": used, "dropped": left out}
    draft: str | None = None  # the model's own text of an answer withheld as unsupported (withhold())
    search: dict[str, Any] | None = None  # the lines shown before the question: {"lines": [...], "absent": [...]}

    # stored in columns of their own (messages, batch_items); every other field goes in their `extra`
    APART = ("answer", "thinking", "citations", "mode", "timings")

    def to_record(self) -> dict[str, Any]:
        """The one shape of an answer: the live JSON and SSE `done` event, and (split by `extra`) what a
        session's message and a batch item store; `from_record` reads any of them back, whole."""
        return {
            "answer": self.answer, "thinking": self.thinking, "citations": self.citations, "mode": self.mode,
            "timings": self.timings, "coverage": self.coverage, "notes": self.notes, "stop_reason": self.stop_reason,
            "claims": self.claims, "grounding": self.grounding, "history": self.history, "draft": self.draft,
            "search": self.search,
        }

    to_dict = to_record

    def extra(self) -> dict[str, Any]:
        """What a stored message or batch item keeps besides its own columns (`APART`)."""
        return {k: v for k, v in self.to_record().items() if k not in self.APART}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> Answer:
        """An answer from its record, or from a stored row's columns and extra (missing fields: defaults;
        rows written before a field existed lack it)."""
        return cls(
            answer=d.get("answer") or "", thinking=d.get("thinking") or "", citations=list(d.get("citations") or []),
            mode=d.get("mode") or "", timings=dict(d.get("timings") or {}), coverage=d.get("coverage"),
            notes=list(d.get("notes") or []), stop_reason=d.get("stop_reason") or "eos",
            claims=list(d.get("claims") or []), grounding=dict(d.get("grounding") or {}),
            history=dict(d.get("history") or {}), draft=d.get("draft"), search=d.get("search"),
        )


@dataclass(frozen=True)
class Prepared:
    """A question that passed every check (Engine.prepare), with what answering it needs: its text and
    its tokens (counted once), its sampling, its answer budget and its ticket in the model's queue."""

    question: str
    question_tokens: int
    sampling: Sampling
    max_tokens: int
    ticket: Ticket


@dataclass(frozen=True)
class PrefixAt:
    """A context a question over a document set starts from: its size, its prefix (instructions and
    documents, or one chunk), and whether it may be stretched (whole mode) or not (a chunk's)."""

    n_ctx: int
    tokens: list[int]
    yarn: bool


@dataclass
class _Call:
    """What every job of one question shares: its event sink, its cancel flag, its ticket in the queue."""

    on_event: EventSink | None
    cancel: threading.Event
    ticket: Ticket
    turns: list[Turn] = field(default_factory=list)
    dropped: int = 0  # turns left out for room (the most over every context of the question)
    notes: list[str] = field(default_factory=list)  # what the backend said of its jobs (a retry elsewhere)
    partial: str = ""  # AskOptions.continue_from: the answer's text so far, already in the assistant's turn
    searched: dict[str, Any] | None = None  # what Engine.search showed the model before the question


class Engine:
    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.counts = TokenCounts(settings.max_set_tokens)  # exact counts per (tokenizer, set), computed once
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self._grounders: OrderedDict[tuple[Any, ...], Grounder] = OrderedDict()  # a few recent source sets
        self._labels: dict[str, int] = {}  # tokenizer identity -> tokens of the question's label

    def backend(self, spec: Spec) -> Backend:
        """The backend that runs `spec` (made on first use, one per model name)."""
        with self._lock:
            if spec.name not in self._backends:
                self._backends[spec.name] = spec.open(self.settings)
            return self._backends[spec.name]

    def reserve(self, spec: Spec, klass: str = "interactive", principal: str = "") -> Ticket:
        """A ticket in the model's queue, in priority class `klass` (interactive, batch, read_ahead) for
        `principal` (runtime.py: classes served in order, principals in turn); released by its `with`."""
        return self.backend(spec).reserve(klass, principal)

    def preload(self, registry: ModelRegistry) -> None:
        """Make the default model (always a local GGUF) ready before the first question (DOCQA_PRELOAD):
        its runner started. Runs on a thread of its own at start; a model that cannot be loaded says so
        in health, as the first question would have found."""
        try:
            spec = registry.get(None)
        except DocqaError as exc:
            log.warning("no model preloaded: %s", exc.detail)
            return
        self.backend(spec).warm()

    def close(self) -> None:
        with self._lock:
            backends = list(self._backends.values())
        for b in backends:
            b.close()

    def model_health(self, spec: Spec) -> dict[str, Any]:
        """What /api/health reports per model: ready or why not, its queue, its backend's details."""
        return self.backend(spec).health()

    # -- prompts ------------------------------------------------------------------------------------

    def _tokens(self, spec: Spec, system: str, body: str, question: str,
                thinking: bool | None, turns: Sequence[Turn] = (), found: str = "") -> tuple[list[int], list[int]]:
        """(prefix, suffix): the prefix ends after the documents; the suffix holds the earlier turns,
        what a search of the documents `found` for the question (prompts.search_text), and the question."""
        backend = self.backend(spec)
        rendered = backend.template().render(system, [body, found + prompts.question_text(question)],
                                             enable_thinking=thinking,
                                             turns=[(prompts.question_text(q), a) for q, a in turns])
        pieces = rendered.pieces
        cut = next(i for i, (_, trusted) in enumerate(pieces) if not trusted) + 1  # the documents' piece
        return backend.tokenize(pieces[:cut], add_bos=True), backend.tokenize(pieces[cut:], add_bos=False)

    def count(self, spec: Spec, text: str) -> int:
        return self.backend(spec).count(text)

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
            out.append(prompts.render_part(p.document, p.section, p.text, p.line_start, p.line_end))
        if current is not None:
            out.append(prompts.DOCUMENT_CLOSE)
        return "".join(out)

    # -- planning -----------------------------------------------------------------------------------

    def plan(self, spec: Spec, sources: Sources, mode: str | None = None,
             answer_tokens: int | None = None) -> Plan:
        """The backend's plan for the document set (explained in its terms), counting nothing twice."""
        check_mode(mode)
        backend = self.backend(spec)
        docs = [d for d, _ in sources]  # counted once per (tokenizer, set): token_counts.py
        prompt_tokens = self.counts.prompt_tokens(backend.identity, docs, lambda: sum(map(len, self._tokens(
            spec, prompts.INSTRUCTIONS, self.render_documents(sources), "", None))))
        s = self.settings
        plan = backend.plan(PlanNeeds(
            model_name=spec.name, prompt_tokens=prompt_tokens, question_tokens=s.question_tokens,
            answer_tokens=answer_tokens or s.answer_tokens, history_tokens=s.history_tokens if s.history_turns else 0,
            chunk_ctx=s.chunk_context, forced_mode=None if mode in (None, "auto") else mode,
        ))
        if plan.mode == "chunked":  # count the chunks exactly as answering will cut them
            layout = f"{plan.chunk_ctx or plan.n_ctx}:{plan.question_tokens}:{plan.answer_tokens}"
            plan.n_chunks = self.counts.chunks(backend.identity, docs, layout,
                                               lambda: len(self.chunks(spec, plan, sources)))
            plan.reason = plan.reason.replace("{n_chunks}", f"{plan.n_chunks:,}")
        return plan

    def holds(self, spec: Spec, plan: Plan, sources: Sources) -> bool:
        """Whether the model keeps the first context's prefix of a question over `sources` already (a
        snapshot, a server slot, read ahead): the first question then starts from it."""
        first = self.prefixes(spec, plan, sources, limit=1)
        return bool(first) and self.backend(spec).holds(plan, first[0].n_ctx, first[0].tokens, yarn=first[0].yarn)

    # -- answering ----------------------------------------------------------------------------------

    def count_question(self, spec: Spec, question: str) -> int:
        """The question's tokens as the prompt holds it ("\nQuestion: …", less the label): the piece the
        prompt tokenizes next, so a remote backend asks its server once per question, not twice."""
        with self._lock:
            label = self._labels.get(spec.identity)
        if label is None:
            label = self.count(spec, prompts.question_text("").rstrip())
            with self._lock:
                self._labels[spec.identity] = label
        return self.count(spec, prompts.question_text(question)) - label

    def prepare(self, spec: Spec, plan: Plan, question: object, opts: AskOptions, *, klass: str = "interactive",
                principal: str = "", ticket: Ticket | None = None) -> Prepared:
        """Every check that can refuse a question, once, before any work starts (a streamed answer has
        sent its 200 once its first event is out, so a refusal must come first): its size, its tokens
        (counted once), its answer budget and its sampling; last, its ticket in the model's queue (or a
        503 now). `run` then answers it without checking anything again."""
        text = clean_question(question, self.settings.question_tokens)
        n = self.count_question(spec, text)
        check_question_tokens(text, n, self.settings.question_tokens)
        check_max_tokens(opts.max_tokens, plan.answer_tokens, "the answer budget of this session's plan")
        sampling = self.sampling(spec, opts.sampling)
        return Prepared(text, n, sampling, opts.max_tokens or plan.answer_tokens,
                        ticket or self.reserve(spec, klass, principal))

    def sampling(self, spec: Spec, overrides: dict[str, float | str]) -> Sampling:
        """The question's sampling: the model vendor's default for answering from documents, or the
        named `preset`, then each option the question sets, checked (sampling.py)."""
        return choose(spec.vendor, spec.family, overrides, self.settings.seed)

    def answer(self, spec: Spec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
               on_event: EventSink | None = None, cancel: threading.Event | None = None,
               ticket: Ticket | None = None, turns: Sequence[Turn] = (), klass: str = "interactive",
               principal: str = "") -> Answer:
        """`prepare` then `run`, under `ticket` (taken in priority class `klass` for `principal` when none
        is given), given back when it ends: the CLI's, the tests' and the benches' one call."""
        prepared = self.prepare(spec, plan, question, opts, klass=klass, principal=principal, ticket=ticket)
        with prepared.ticket:
            return self.run(spec, plan, sources, prepared, opts, on_event, cancel, turns)

    def run(self, spec: Spec, plan: Plan, sources: Sources, prepared: Prepared, opts: AskOptions,
            on_event: EventSink | None = None, cancel: threading.Event | None = None,
            turns: Sequence[Turn] = ()) -> Answer:
        """Answer a prepared question under its ticket (the caller's `with` holds it), so every job it
        runs, one per chunk in chunked mode, is accepted; nothing is checked again. `turns`: the
        conversation's earlier (question, answer) pairs, oldest first."""
        if not prepared.ticket.held:
            raise RuntimeError("a prepared question runs while its ticket is held (inside its `with` block)")
        held, question, sampling, max_tokens = prepared.ticket, prepared.question, prepared.sampling, \
            prepared.max_tokens
        cap = self.settings.history_turns if opts.history else 0
        earlier = list(turns)
        kept = earlier[len(earlier) - cap:] if cap else []
        call = _Call(on_event, cancel or threading.Event(), held, kept, partial=opts.continue_from or "")
        notes: list[str] = []
        if len(kept) < len(earlier) and opts.history:
            notes.append(f"The {len(earlier) - len(kept)} oldest earlier turn(s) of this conversation were left "
                         f"out: at most {cap} are carried into a question (DOCQA_HISTORY_TURNS).")
        current = plan
        while True:
            try:
                run = self._whole if current.mode == "whole" else self._chunked
                result = run(spec, current, sources, question, opts, sampling, max_tokens, call)
                if call.dropped:
                    notes.append(f"The {call.dropped} oldest earlier turn(s) of this conversation were left out "
                                 "to fit the context (DOCQA_HISTORY_TOKENS).")
                result.search = call.searched
                result.history = {"turns": len(kept) - call.dropped,
                                  "dropped": len(earlier) - len(kept) + call.dropped, "enabled": opts.history}
                result.notes = notes + call.notes + result.notes
                claims = [grounding.Claim(**c) for c in result.claims]
                result.grounding = {**grounding.summary(claims), "method": grounding.METHOD}
                if (warning := grounding.note(claims)):
                    result.notes.append(warning)
                said = " ".join(q for q, _ in kept[call.dropped:])  # the user's words in the turns carried
                # an answer cut at its limit is judged too: "continue" goes on from its draft (sessions.py)
                if self.settings.unsupported_answers == "withhold" and (why := self.grounder(sources).withholds(
                        claims, question, said)):
                    withhold(result, why)
                return result
            except ContextAllocationFailed as exc:
                notes.append(f"{exc.detail} Falling back.")
                current = self._fallback(spec, current, sources, exc)

    def _fallback(self, spec: Spec, plan: Plan, sources: Sources, exc: ContextAllocationFailed) -> Plan:
        cheaper = self.backend(spec).degrade(plan)
        if cheaper is not None:
            return cheaper
        if plan.mode == "whole":
            chunked = self.plan(spec, sources, "chunked", plan.answer_tokens)
            chunked.reason = "the whole-document context could not be allocated; fell back to chunked mode"
            return chunked
        raise exc

    def _run(self, spec: Spec, plan: Plan, n_ctx: int, prefix: list[int], suffix: list[int], max_tokens: int,
             sampling: Sampling, start_thinking: bool, call: _Call, progress_extra: dict[str, Any] | None = None,
             stream: bool = True, yarn: bool = True) -> tuple[Generation, float]:
        on_event = call.on_event
        request = Request(
            plan=plan, n_ctx=n_ctx, prefix=prefix, suffix=suffix, max_tokens=max_tokens, sampling=sampling,
            start_in_thinking=start_thinking, cancel=call.cancel, yarn=yarn,
            on_progress=(lambda p: on_event("progress", {**p, **(progress_extra or {})})) if on_event else None,
            on_token=(lambda kind, text: on_event(kind, {"text": text})) if on_event and stream else None,
        )
        gen, queue_s = self.backend(spec).generate(request, call.ticket)
        call.notes.extend(n for n in gen.notes if n not in call.notes)
        return gen, queue_s

    def prefixes(self, spec: Spec, plan: Plan, sources: Sources, limit: int = 0) -> list[PrefixAt]:
        """The contexts a question over `sources` starts from, in the order it reads them: the documents'
        one in whole mode, each chunk's in chunked mode (the question and the conversation come after
        them); at most `limit` of them (0: all). What read-ahead reads (readahead.py), on any backend."""
        if plan.mode == "whole":
            prefix, _ = self._tokens(spec, prompts.INSTRUCTIONS, self.render_documents(sources), "", None)
            return [PrefixAt(plan.n_ctx, prefix, True)]
        ctx = plan.chunk_ctx or plan.n_ctx
        thinking = False if spec.family == "hybrid" else None
        chunks = self.chunks(spec, plan, sources)
        return [PrefixAt(ctx, self._tokens(spec, prompts.MAP_INSTRUCTIONS, self.render_parts(chunk), "", thinking)[0],
                         False) for chunk in (chunks[:limit] if limit else chunks)]

    def _starts_thinking(self, spec: Spec, opts: AskOptions) -> bool:
        if opts.continue_from:  # the answer is under way: its thinking (if any) is over
            return False
        return spec.family == "thinking" or (spec.family == "hybrid" and opts.thinking is not False)

    def _continuation(self, spec: Spec, partial: str) -> list[int]:
        """The tokens that put an unfinished answer into the assistant's open turn, so the model goes
        on from its last word (what llama-server's and LM Studio's "continue" do). A thinking model's
        template opens the turn with <think>: close it first."""
        if not partial:
            return []
        pieces: list[tuple[str, bool]] = [("\n</think>\n\n", True)] if spec.family == "thinking" else []
        return self.backend(spec).tokenize([*pieces, (partial, False)], add_bos=False)

    def _whole(self, spec: Spec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
               sampling: Sampling, max_tokens: int, call: _Call) -> Answer:
        thinking_flag = (False if opts.continue_from else opts.thinking) if spec.family == "hybrid" else None
        found = self.search(sources, question, plan, call)
        prefix, suffix = self._conversation(spec, prompts.INSTRUCTIONS, self.render_documents(sources), question,
                                            thinking_flag, call, plan.n_ctx - max_tokens, final=True, found=found)
        gen, queue_s = self._run(spec, plan, plan.n_ctx, prefix, suffix, max_tokens, sampling,
                                 self._starts_thinking(spec, opts) and spec.family == "thinking", call)
        _tidy(gen, call)
        claims = self.grounder(sources).ground(gen.text, question)
        return Answer(
            answer=gen.text, thinking=gen.thinking, mode="whole", stop_reason=gen.stop_reason,
            citations=cite(gen.text, sources, claims), claims=[c.to_dict() for c in claims],
            timings=_timings(gen, queue_s, gen.prefill_tokens, gen.cached_tokens, gen.prefill_s, gen.generate_s,
                             gen.generated_tokens, gen.prefix_source),
        )

    def _conversation(self, spec: Spec, system: str, body: str, question: str, thinking: bool | None,
                      call: _Call, room: int, *, final: bool = False, found: str = "") -> tuple[list[int], list[int]]:
        """(prefix, suffix) with as many of the latest earlier turns as fit in `room` tokens (the
        context less the answer budget), and what the search `found` if it fits after them. The prefix
        does not depend on the turns: tokenized once. `final`: this context writes the answer (not a
        map step), so an unfinished answer goes on in it."""
        turns = call.turns
        tail = self._continuation(spec, call.partial) if final else []
        prefix, suffix = self._tokens(spec, system, body, question, thinking, turns, found)
        while (turns or found) and len(prefix) + len(suffix) + len(tail) > room:
            if turns:
                turns = turns[1:]
            else:
                found, call.searched = "", None  # the answer says only what the model was shown
            _, suffix = self._tokens(spec, system, "", question, thinking, turns, found)
        call.dropped = max(call.dropped, len(call.turns) - len(turns))
        return prefix, suffix + tail

    def search(self, sources: Sources, question: str, plan: Plan, call: _Call) -> str:
        """The prompt text of what a search of the documents finds for the question (DOCQA_SEARCH_LINES),
        for document sets of SEARCH_MIN_TOKENS or more; what it found goes into `call.searched`."""
        k = self.settings.search_lines
        if k <= 0 or plan.prompt_tokens < SEARCH_MIN_TOKENS:
            return ""
        found = self.grounder(sources).search(question, k)
        # each line under the marker the documents above show for its place ("[page 2]", not "[p. 2]")
        lines = [(f"[page {p.page}]" if p.page is not None else grounding.marker(p.location()), p.text[:400])
                 for p in found.passages]
        call.searched = {"lines": [{"marker": m, "text": t} for m, t in lines], "absent": found.absent}
        return prompts.search_text(lines, found.absent)

    def grounder(self, sources: Sources) -> Grounder:
        """The grounder of a source set (its passages split once), kept for the next questions."""
        key = tuple((doc.id, doc.sha256, len(sections)) for doc, sections in sources)
        with self._lock:
            found = self._grounders.get(key)
            if found is not None:
                self._grounders.move_to_end(key)
                return found
        made = Grounder(sources)
        with self._lock:
            self._grounders[key] = made
            while len(self._grounders) > 4:
                self._grounders.popitem(last=False)
        return made

    def chunks(self, spec: Spec, plan: Plan, sources: Sources) -> list[list[Part]]:
        overhead_prefix, overhead_suffix = self._tokens(spec, prompts.MAP_INSTRUCTIONS, "", "", None)
        chunk_ctx = plan.chunk_ctx or plan.n_ctx
        budget = chunk_ctx - len(overhead_prefix) - len(overhead_suffix) - plan.question_tokens \
            - plan.history_tokens - max(plan.answer_tokens, MAP_ANSWER_TOKENS) - 64 * 2  # markers and document tags
        count = lambda text: self.count(spec, text)  # noqa: E731
        parts = parts_of(sources, count, max(64, budget // 2))
        return pack(parts, budget, self.settings.chunk_overlap)

    def _chunked(self, spec: Spec, plan: Plan, sources: Sources, question: str, opts: AskOptions,
                 sampling: Sampling, max_tokens: int, call: _Call) -> Answer:
        on_event = call.on_event
        chunks = self.chunks(spec, plan, sources)
        evidence: list[str] = []
        passages: list[Passage] = []  # the same evidence, with where it is and which chunk quoted it
        contributing: list[int] = []
        totals: dict[str, Any] = {"prefill_tokens": 0, "cached_tokens": 0, "prefill_s": 0.0, "generate_s": 0.0,
                                  "generated": 0, "queue_s": 0.0}
        map_sampling = replace(sampling, temperature=0.0)
        ctx = plan.chunk_ctx or plan.n_ctx
        for i, chunk in enumerate(chunks):
            prefix, suffix = self._conversation(spec, prompts.MAP_INSTRUCTIONS, self.render_parts(chunk), question,
                                                False if spec.family == "hybrid" else None, call,
                                                ctx - MAP_ANSWER_TOKENS)
            gen, queue_s = self._run(spec, plan, ctx, prefix, suffix, MAP_ANSWER_TOKENS, map_sampling,
                                     spec.family == "thinking", call,
                                     {"chunk": i + 1, "chunks": len(chunks)}, stream=False, yarn=False)
            _accumulate(totals, gen, queue_s)
            # Keep only what the chunk really says: a small model "quotes" things that are not there.
            found = [] if gen.text.strip().upper().startswith("NONE") else _evidence(gen.text, chunk, i + 1)
            if found:
                evidence.extend(text for text, _ in found)
                passages.extend(p for _, p in found)
                contributing.append(i + 1)
            if on_event:
                on_event("progress", {"phase": "map", "chunk": i + 1, "chunks": len(chunks), "relevant": bool(found)})
        # The quotes of every chunk go into one context of the same size: keep those that fit.
        evidence, left_out = self._fit_evidence(spec, plan, evidence, max_tokens)
        body = EVIDENCE_HEADER + ("\n\n".join(evidence) if evidence else "(none found)")
        prefix, suffix = self._conversation(spec, prompts.REDUCE_INSTRUCTIONS, body, question,
                                            (False if opts.continue_from else opts.thinking)
                                            if spec.family == "hybrid" else None, call, ctx - max_tokens, final=True,
                                            found=self.search(sources, question, plan, call))
        gen, queue_s = self._run(spec, plan, ctx, prefix, suffix, max_tokens, sampling,
                                 spec.family == "thinking" and not opts.continue_from, call, yarn=False)
        _tidy(gen, call)
        claims = self.grounder(sources).ground(gen.text, question, passages)
        _accumulate(totals, gen, queue_s)
        timings = _timings(gen, totals["queue_s"], totals["prefill_tokens"], totals["cached_tokens"],
                           totals["prefill_s"], totals["generate_s"], totals["generated"], "chunked")
        return Answer(
            answer=gen.text, thinking=gen.thinking, mode="chunked", stop_reason=gen.stop_reason,
            citations=cite(gen.text, sources, claims), timings=timings, claims=[c.to_dict() for c in claims],
            coverage={"chunks_total": len(chunks), "chunks_read": len(chunks), "contributing": contributing},
            notes=[f"{left_out} quoted passage(s) did not fit the final context and were left out."]
            if left_out else [],
        )

    def _fit_evidence(self, spec: Spec, plan: Plan, evidence: list[str], max_tokens: int) -> tuple[list[str], int]:
        """The quotes, each once and in document order, that fit the reduce context beside the
        instructions, the question and the answer; and how many did not (the prompt would not fit)."""
        prefix, suffix = self._tokens(spec, prompts.REDUCE_INSTRUCTIONS, EVIDENCE_HEADER, "", None)
        room = (plan.chunk_ctx or plan.n_ctx) - len(prefix) - len(suffix) - plan.question_tokens \
            - plan.history_tokens - max_tokens
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


WITHHELD = ("The documents do not seem to say: docqa found nothing in them that supports the model's answer, "
            "so it is not shown as one.")


def withhold(result: Answer, why: str = "") -> None:
    """Replace an answer the documents speak against (Grounder.withholds: `why`) by saying so; the model's
    text stays in `draft` and in the notes, its claims as they were. For legal and code review an answer
    the documents contradict is worse than none. The note is for a reader: it names no setting."""
    result.draft = result.answer
    result.answer = WITHHELD
    result.citations = []
    reason = f": {why}" if why else ""
    result.notes.append(f'The model answered "{_clip(result.draft, 300)}", but the documents do not support that '
                        f"as an answer to the question{reason}. It is kept as the draft.")


def _tidy(gen: Generation, call: _Call) -> None:
    """The answer without a loop (cut after its first round: the local runner already stopped writing
    there, stop_reason "loop") and without docqa's own prompt text written back; notes say so."""
    text, notes = loops.tidy(gen.text)
    if gen.stop_reason == "loop" and not notes:
        notes = ["The model began to repeat itself; the answer was stopped there."]
    gen.text = text
    call.notes.extend(n for n in notes if n not in call.notes)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _evidence(text: str, chunk: list[Part], chunk_no: int) -> list[tuple[str, Passage]]:
    """What the map step of chunk `chunk_no` quoted that the chunk really says: the line for the
    reduce prompt, and the passage (with its place) that grounding keeps as the claim's evidence."""
    out = []
    for part in chunk:
        for quote in verbatim_spans(text, part.text):
            s = part.section
            page = f"{s.path} p. {s.page}" if s.path else f"page {s.page}"
            where = page if s.page is not None else f"{s.path or part.document.filename}, lines " \
                f"{part.line_start}-{part.line_end}"
            if s.para_start is not None:  # Word / HTML: cited by clause and paragraph
                clause = f" §{s.clause}" if s.clause else ""
                where = f"{part.document.filename}{clause} ¶{part.line_start}-{part.line_end}"
            line = f"{part.document.filename}, {where}: {quote}" if s.page is not None else f"{where}: {quote}"
            path = s.path or (part.document.filename if s.page is None else None)
            out.append((line, Passage(part.document.id, part.document.filename, s.page, path,
                                      part.line_start if s.page is None else None,
                                      part.line_end if s.page is None else None, quote, chunk=chunk_no)))
    return out


def cite(text: str, sources: Sources, claims: Sequence[grounding.Claim] = ()) -> list[dict[str, Any]]:
    """The model's own citations, checked; failing those, the passages grounding found (origin "matched")."""
    found = extract_citations(text, sources)
    return [c.to_dict() for c in found] if found else grounding.citations(claims)


def _accumulate(totals: dict[str, Any], gen: Generation, queue_s: float) -> None:
    totals["prefill_tokens"] += gen.prefill_tokens
    totals["cached_tokens"] += gen.cached_tokens
    totals["prefill_s"] += gen.prefill_s
    totals["generate_s"] += gen.generate_s
    totals["generated"] += gen.generated_tokens
    totals["queue_s"] += queue_s


def _timings(gen: Generation, queue_s: float, prefill_tokens: int, cached: int, prefill_s: float,
             generate_s: float, generated: int, source: str) -> dict[str, Any]:
    out = {
        "queue_s": round(queue_s, 3), "prefill_s": round(prefill_s, 3), "prefill_tokens": prefill_tokens,
        "cached_tokens": cached, "generate_s": round(generate_s, 3), "generated_tokens": generated,
        "tokens_per_s": round(generated / generate_s, 2) if generate_s else 0.0, "prefix_source": source,
    }
    if gen.prefix_source == "read-ahead":
        out["read_ahead_tokens"] = gen.read_ahead_tokens
    if gen.yields:  # it gave the model to higher-priority work and resumed
        out.update(yields=gen.yields, resumed_tokens=gen.resumed_tokens)
    return out


__all__ = ["Answer", "AskOptions", "ContextBudgetExceeded", "Engine"]
