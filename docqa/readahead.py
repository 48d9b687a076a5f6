"""Read-ahead: read a document set's prefix before anyone asks about it.

When a session is opened (or documents are chosen on the page: POST /api/read-ahead), the documents'
prompt prefix is read into the model's KV cache in the background, in the lowest priority class of
the model's queue (runtime.py): it runs only when nothing else waits, and yields at its next slice as
soon as a question or a batch item arrives, keeping what it read (a partial snapshot, runner.py), to
resume when the model is idle again. In whole-document mode it reads the documents' prefix; in
chunked mode the first chunks. At most `DOCQA_READ_AHEAD_TOKENS` tokens per set. Its snapshot is
saved as a question's is, except that it never evicts a snapshot used since the read-ahead was asked
for (state_cache.StateCache.evict). A question on the set then starts where the reading got to:
its timings say `prefix_source: "read-ahead"` and `read_ahead_tokens`. `DOCQA_READ_AHEAD=false`
turns it all off.

Read-ahead is accountable work (issue 29: 400 calls over 70 documents once queued 400 places and
399 jobs, and deleting the documents stopped none of them):
- a principal has one set read ahead at a time: a new set stops and replaces its earlier ones that
  are not done (the page asks for the ticked set; a script asking for 400 gets the last);
- at most `DOCQA_READ_AHEAD_SETS` sets are read ahead at once in all; past it a new one is refused
  (state `refused`, with the reason), never queued;
- a set not done is never forgotten (only finished ones leave the registry), so deleting a document
  stops at once every read-ahead that reads it, queued or running, and forgets them;
- the registry is per principal: one principal's read-ahead is never another's answer, even for the
  same bytes.

This sits above the backend: it only queues `Work(read_ahead=True)` jobs; the local runner reads them
in slices. A remote backend (llama-server's `n_predict: 0` with `cache_prompt`) can serve the same
jobs (not built here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from docqa.engine.budget import Plan
from docqa.engine.models import Spec
from docqa.engine.runtime import YIELD_SLICE, Job, _Requeue
from docqa.engine.work import Cancelled, Sampling
from docqa.errors import DocqaError

if TYPE_CHECKING:
    from docqa.engine.engine import Engine, Sources

log = logging.getLogger(__name__)
KEEP = 64  # finished read-aheads remembered for health and the plan (those not done are all kept)
ACTIVE = ("queued", "reading", "yielded")


@dataclass
class Reading:
    """One document set's read-ahead, as health shows it."""

    model: str
    owner: str
    document_ids: list[str]
    mode: str
    tokens_total: int  # the prefix tokens (whole mode) or the chunks' (chunked) that a question reads first
    tokens_limit: int  # how many of them read-ahead reads (DOCQA_READ_AHEAD_TOKENS)
    state: str = "queued"  # queued | reading | yielded | done | stopped | failed | refused
    tokens_done: int = 0
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    jobs: list[Job] = field(default_factory=list)
    cancels: list[threading.Event] = field(default_factory=list)  # a remote read-ahead's request
    withdraw: list[Callable[[], object]] = field(default_factory=list)  # takes its queued job out of the queue

    def stop(self, reason: str) -> None:
        """Stopped now: its queued job leaves the model's queue (its place is given back at once), a running
        one stops at its next slice."""
        self.state, self.reason = "stopped", reason
        for job in self.jobs:
            job.cancel.set()
        for cancel in self.cancels:
            cancel.set()
        for withdraw in self.withdraw:
            withdraw()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "document_ids": self.document_ids, "mode": self.mode, "state": self.state,
                "tokens_done": self.tokens_done, "tokens_total": self.tokens_total,
                "tokens_limit": self.tokens_limit, "reason": self.reason}


class ReadAhead:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self._lock = threading.Lock()
        self._readings: OrderedDict[tuple[str, ...], Reading] = OrderedDict()
        self._keys: dict[tuple[Any, ...], list[str]] = {}  # (model, documents, layout) -> snapshot keys

    @property
    def enabled(self) -> bool:
        return bool(self.settings.read_ahead) and self.settings.read_ahead_tokens > 0

    def start(self, spec: Spec, plan: Plan, sources: Sources, owner: str = "") -> dict[str, Any]:
        """Start reading `sources` ahead under `plan` (idempotent: a set already read, queued or being read
        is left as it is). Returns what health shows for it."""
        ids = [str(d.id) for d, _ in sources]
        if not self.enabled:
            return {"state": "off", "document_ids": ids, "reason": "read-ahead is turned off (DOCQA_READ_AHEAD)"}
        backend = self.engine.backend(spec)
        if not hasattr(backend, "runtime"):  # remote: the server reads the prefix into a slot's cache
            return self._start_remote(spec, plan, sources, owner, backend)
        prefixes = self.engine.prefixes(spec, plan, sources)
        keys = (owner, *(k for _, _, k in prefixes))
        self._remember(self._layout(spec, plan, sources), list(keys[1:]))
        limit = self.settings.read_ahead_tokens
        total = sum(len(p) for p, _, _ in prefixes)
        self.drop(owner, keep=(spec.name, ids, plan.mode), reason="replaced by a newer set")
        with self._lock:
            found = self._readings.get(keys)
            if found is not None and found.state not in ("stopped", "failed"):
                self._readings.move_to_end(keys)
                return found.to_dict()
            reading = Reading(spec.name, owner, ids, plan.mode, total, min(total, limit))
            refused = self._refuse_if_full(reading)
            if refused is not None:
                return refused
            self._readings[keys] = reading
            self._trim()
        runtime = self.engine.runtime(spec)
        budget = limit
        for prefix, config, key in prefixes:
            if budget <= 0:
                break
            n = min(len(prefix), budget)
            budget -= n
            if self.engine.cache.has(key):  # read before (a question, an earlier read-ahead): nothing to do
                reading.tokens_done += n
                continue
            job = Job(config=config, prefix=prefix, suffix=[], state_key=key, max_tokens=0, sampling=Sampling(),
                      stream=False, progress=True, read_ahead=True, read_limit=n if n < len(prefix) else 0,
                      slice_tokens=YIELD_SLICE,
                      evict_before=reading.started_at)
            base = reading.tokens_done
            job.on_progress = lambda p, _r=reading, _b=base: self._progress(_r, _b, p)
            reading.jobs.append(job)
        if not reading.jobs:
            reading.state, reading.reason = "done", "already read"
            return reading.to_dict()
        try:
            place = runtime.reserve("read_ahead", owner)
        except DocqaError as exc:  # the model is stopped (it kept crashing): nothing is read
            reading.state, reading.reason = "failed", exc.detail
            return reading.to_dict()
        self._chain(runtime, place, reading, list(reading.jobs))
        return reading.to_dict()

    def _start_remote(self, spec: Spec, plan: Plan, sources: Sources, owner: str, backend: Any) -> dict[str, Any]:
        """llama-server reads a prefix into a slot's prompt cache when asked for no tokens (`n_predict: 0`,
        `cache_prompt`); the question is then routed to that slot (prefix affinity) and reuses it. The
        server has no priorities: a read-ahead holds its slot until read (a question may take another)."""
        from docqa.engine.backend import Request

        ids = [str(d.id) for d, _ in sources]
        limit = self.settings.read_ahead_tokens
        prefixes = self.engine.prefix_tokens(spec, plan, sources)[:1]  # chunked: the first chunk
        if not prefixes or len(prefixes[0]) > limit:
            return {"state": "off", "document_ids": ids,
                    "reason": f"the documents' prefix is longer than DOCQA_READ_AHEAD_TOKENS ({limit:,})"}
        keys = (owner, "remote", spec.name, *ids, plan.mode, str(len(prefixes[0])))
        self.drop(owner, keep=(spec.name, ids, plan.mode), reason="replaced by a newer set")
        with self._lock:
            found = self._readings.get(keys)
            if found is not None and found.state not in ("stopped", "failed"):
                self._readings.move_to_end(keys)
                return found.to_dict()
            reading = Reading(spec.name, owner, ids, plan.mode, len(prefixes[0]), len(prefixes[0]))
            refused = self._refuse_if_full(reading)
            if refused is not None:
                return refused
            self._readings[keys] = reading
            self._trim()
        cancel = threading.Event()
        reading.cancels.append(cancel)

        def progress(p: dict[str, Any]) -> None:
            reading.state = "reading"
            reading.tokens_done = max(reading.tokens_done, int(p.get("tokens_done", 0)))

        def run() -> None:
            try:
                with backend.reserve("read_ahead", owner) as slot:
                    if cancel.is_set():
                        return
                    reading.state = "reading"
                    backend.generate(Request(plan=plan, n_ctx=plan.n_ctx, prefix=prefixes[0], suffix=[], max_tokens=0,
                                             sampling=Sampling(temperature=0.0), cancel=cancel,
                                             on_progress=progress), slot)
                reading.state, reading.tokens_done = "done", len(prefixes[0])
            except Cancelled:
                reading.state, reading.reason = "stopped", reading.reason or "cancelled"
            except Exception as exc:  # noqa: BLE001 - a read-ahead never fails anything else
                if reading.state != "stopped":
                    reading.state = "failed"
                    reading.reason = exc.detail if isinstance(exc, DocqaError) else (str(exc) or type(exc).__name__)

        threading.Thread(target=run, daemon=True, name="read-ahead-remote").start()
        return reading.to_dict()

    def _refuse_if_full(self, reading: Reading) -> dict[str, Any] | None:
        """(Under the lock) the refusal of a new set when DOCQA_READ_AHEAD_SETS sets are being read, else None."""
        active = sum(1 for r in self._readings.values() if r.state in ACTIVE)
        if active < self.settings.read_ahead_sets:
            return None
        reading.state = "refused"
        reading.reason = (f"{active} document sets are being read ahead, as many as DOCQA_READ_AHEAD_SETS allows; "
                          "the first question on these documents reads them itself")
        return reading.to_dict()

    def _trim(self) -> None:
        """(Under the lock) forget the oldest finished sets past KEEP; a set not done is never forgotten."""
        finished = [k for k, r in self._readings.items() if r.state not in ACTIVE]
        for k in finished[: max(0, len(self._readings) - KEEP)]:
            del self._readings[k]

    def _chain(self, runtime: Any, place: Any, reading: Reading, jobs: list[Job]) -> None:
        """Run the set's jobs one after another (each queued when the previous ends), under one place."""
        if not jobs or reading.state in ("stopped", "failed"):
            place.release()
            if reading.state not in ("stopped", "failed"):
                reading.state = "done"
            return
        job, rest = jobs[0], jobs[1:]
        base = reading.tokens_done

        def run(j: Job) -> Any:
            if j.cancel.is_set():  # stopped while queued (replaced, its document deleted): never started
                raise Cancelled("The read-ahead was stopped before it started.")
            reading.state = "reading"
            try:
                return runtime._run(j)
            except _Requeue:
                reading.state = "yielded"
                raise

        try:
            future: Future[Any] = runtime.submit(run, job, place=place)
        except RuntimeError:  # the model's queue closed meanwhile
            place.release()
            return
        reading.withdraw = [lambda: runtime.withdraw(future)]

        def finished(f: Future[Any]) -> None:
            if f.cancelled():  # withdrawn from the queue before it started (Reading.stop)
                reading.state, reading.reason = "stopped", reading.reason or "cancelled"
                self._chain(runtime, place, reading, [])
                return
            try:
                f.result()
            except Cancelled:
                reading.state = "stopped"
                reading.reason = reading.reason or "cancelled"
            except DocqaError as exc:
                reading.state, reading.reason = "failed", exc.detail
            except Exception as exc:  # noqa: BLE001 - a read-ahead never fails anything else
                if not f.cancelled():
                    log.warning("read-ahead of %s failed: %s", reading.document_ids, exc)
                reading.state, reading.reason = "failed", str(exc) or type(exc).__name__
            else:
                reading.tokens_done = base + (job.read_limit or len(job.prefix))
            self._chain(runtime, place, reading, rest)

        future.add_done_callback(finished)

    @staticmethod
    def _progress(reading: Reading, base: int, p: dict[str, Any]) -> None:
        reading.tokens_done = max(reading.tokens_done, base + int(p.get("tokens_done", 0)))

    def stop_documents(self, document_ids: list[str] | str) -> int:
        """Stop every read-ahead that reads one of `document_ids` (they were deleted). Returns how many."""
        gone = {document_ids} if isinstance(document_ids, str) else set(document_ids)
        stopped = 0
        with self._lock:
            hit = {k: r for k, r in self._readings.items() if gone & set(r.document_ids)}
            for k in hit:  # forgotten: health and the plan no longer name them
                del self._readings[k]
            for layout in [lay for lay in self._keys if gone & {str(d) for d, _ in lay[1]}]:
                del self._keys[layout]
        for r in hit.values():
            if r.state in ACTIVE:
                r.stop("a document was deleted")
                stopped += 1
        return stopped

    def drop(self, owner: str, keep: tuple[str, list[str], str] | None = None,
             reason: str = "dropped: the documents are no longer chosen") -> int:
        """Stop `owner`'s read-aheads that are not done, except the set `keep` (model, document ids, mode):
        the client's choice changed or it went away, so nobody is about to ask about them. Returns how many."""
        kept = None if keep is None else (keep[0], sorted(keep[1]), keep[2])
        with self._lock:
            readings = list(self._readings.values())
        dropped = 0
        for r in readings:
            if r.owner != owner or r.state not in ACTIVE:
                continue
            if kept is not None and (r.model, sorted(r.document_ids), r.mode) == kept:
                continue
            r.stop(reason)
            dropped += 1
        return dropped

    def status(self, principal: str | None) -> dict[str, Any]:
        """For /api/health: the caller's read-aheads (none without a valid key), and counts for all."""
        with self._lock:
            readings = list(self._readings.values())
        counts: dict[str, int] = {}
        for r in readings:
            counts[r.state] = counts.get(r.state, 0) + 1
        mine = [r.to_dict() for r in readings if principal is not None and r.owner == principal]
        return {"enabled": self.enabled, "tokens_limit": self.settings.read_ahead_tokens, "counts": counts,
                "sets": mine[-16:]}

    def already_read(self, spec: Spec, plan: Plan, sources: Sources) -> bool:
        """True when a question on `sources` would start from a snapshot (a question or a read-ahead read
        it before): the first context's prefix is on disk."""
        keys = self._keys.get(self._layout(spec, plan, sources))
        if keys is None:
            keys = [k for _, _, k in self.engine.prefixes(spec, plan, sources)[:1]]
            self._remember(self._layout(spec, plan, sources), keys)
        return bool(keys) and self.engine.cache.has(keys[0])

    def _remember(self, layout: tuple[Any, ...], keys: list[str]) -> None:
        with self._lock:
            if len(self._keys) > 4 * KEEP:
                self._keys.clear()
            self._keys[layout] = keys

    @staticmethod
    def _layout(spec: Spec, plan: Plan, sources: Sources) -> tuple[Any, ...]:
        return (spec.identity, tuple((d.id, d.sha256) for d, _ in sources), plan.mode, plan.n_ctx,
                plan.chunk_ctx, plan.type_k, plan.flash_attn, plan.yarn_factor)
