"""Read-ahead: read a document set's prefix before anyone asks about it.

When a session is opened (or documents are chosen on the page: POST /api/read-ahead), the documents'
prompt prefix is read into the model's prefix cache in the background, under a ticket of the lowest
priority class (runtime.py): on the local runner it runs only when nothing else waits, and yields at
its next slice as soon as a question or a batch item arrives, keeping what it read (a partial
snapshot, runner.py), to resume when the model is idle again; on remote servers (which have no
priorities) it waits until no question or batch item holds a ticket, then has a slot read it. In
whole-document mode it reads the documents' prefix; in chunked mode the first chunks.

`DOCQA_READ_AHEAD_TOKENS` means the same on every backend: at most that many prefix tokens per set,
counted from the start (a prefix longer than what is left is read up to it). What it reads is kept as
a question's reading is, except that it never evicts a snapshot used since the read-ahead was asked
for (state_cache.StateCache.evict). A question on the set then starts where the reading got to: its
timings say `prefix_source: "read-ahead"` and `read_ahead_tokens`. A deleted document's read-ahead is
stopped; `DOCQA_READ_AHEAD=false` turns it all off.

This is a use case above the engine: it asks the engine for the set's prefixes and each backend to
read them (`Backend.read_ahead`); it knows nothing of runners or servers.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from docqa.engine.backend import Backend, PrefixRead, Spec, Ticket
from docqa.engine.budget import Plan
from docqa.engine.engine import Engine, PrefixAt
from docqa.engine.sources import Sources
from docqa.errors import Cancelled, DocqaError

log = logging.getLogger(__name__)
KEEP = 64  # finished read-aheads remembered for health and the plan (a set not done is never forgotten)
ACTIVE = ("queued", "reading", "yielded")


@dataclass
class Reading:
    """One document set's read-ahead, as health shows it."""

    model: str
    principal: str
    document_ids: list[str]
    mode: str
    tokens_total: int  # the prefix tokens (whole mode) or the chunks' (chunked) that a question reads first
    tokens_limit: int  # how many of them read-ahead reads (DOCQA_READ_AHEAD_TOKENS)
    state: str = "queued"  # queued | reading | yielded | done | stopped | failed | refused
    tokens_done: int = 0
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "document_ids": self.document_ids, "mode": self.mode, "state": self.state,
                "tokens_done": self.tokens_done, "tokens_total": self.tokens_total,
                "tokens_limit": self.tokens_limit, "reason": self.reason}

    def yielded(self) -> None:
        """It gave the model to higher-priority work; it goes on when the model is idle again (unless it was
        stopped meanwhile: a stopped set stays stopped)."""
        if not self.over:
            self.state = "yielded"

    @property
    def over(self) -> bool:
        return self.state in ("stopped", "failed")


class ReadAhead:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self._lock = threading.Lock()
        self._readings: OrderedDict[tuple[Any, ...], Reading] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.read_ahead) and self.settings.read_ahead_tokens > 0

    def start(self, spec: Spec, plan: Plan, sources: Sources, principal: str = "") -> dict[str, Any]:
        """Start reading `sources` ahead under `plan` (idempotent: a set already read, queued or being read
        is left as it is). Returns what health shows for it."""
        ids = [str(d.id) for d, _ in sources]
        if not self.enabled:
            return {"state": "off", "document_ids": ids, "reason": "read-ahead is turned off (DOCQA_READ_AHEAD)"}
        # keyed by principal too: one principal's reading is never another's entry (issue 29)
        key = (principal, spec.name, spec.identity, tuple((d.id, d.sha256) for d, _ in sources), repr(plan.kv),
               plan.mode, plan.n_ctx, plan.chunk_ctx)
        # one set per principal: a new choice of documents stops the earlier set's reading
        self.drop(principal, keep=(spec.name, ids, plan.mode), reason="replaced by a newer set")
        with self._lock:
            found = self._readings.get(key)
            if found is not None and not found.over:
                self._readings.move_to_end(key)
                return found.to_dict()
            for r in self._readings.values():  # the same set still being read under an earlier plan: kept
                if (r.principal, r.model, sorted(r.document_ids), r.mode) == (principal, spec.name, sorted(ids),
                                                                                plan.mode) and r.state in ACTIVE:
                    return r.to_dict()
        backend = self.engine.backend(spec)
        limit = self.settings.read_ahead_tokens
        prefixes = self.engine.prefixes(spec, plan, sources)
        total = sum(len(p.tokens) for p in prefixes)
        reading = Reading(spec.name, principal, ids, plan.mode, total, min(total, limit))
        with self._lock:
            active = sum(1 for r in self._readings.values() if r.state in ACTIVE)
            if active >= self.settings.read_ahead_sets:  # DOCQA_READ_AHEAD_SETS in all, whoever asks
                reading.state = "refused"
                reading.reason = (f"{active} document sets are being read ahead, as many as DOCQA_READ_AHEAD_SETS "
                                  "allows; the first question on these documents reads them itself")
                return reading.to_dict()
            self._readings[key] = reading
            finished = [k for k, r in self._readings.items() if r.state not in ACTIVE]
            for k in finished[: max(0, len(self._readings) - KEEP)]:
                del self._readings[k]
        todo: list[tuple[PrefixAt, int]] = []  # what is not kept yet, and how many of its tokens to read
        budget = limit
        for p in prefixes:
            if budget <= 0:
                break
            n = min(len(p.tokens), budget)
            budget -= n
            if backend.holds(plan, p.n_ctx, p.tokens, yarn=p.yarn):  # read before (a question, a read-ahead)
                reading.tokens_done += n
            else:
                todo.append((p, n))
        if not todo:
            reading.state, reading.reason = "done", "already read"
            return reading.to_dict()
        try:
            ticket = backend.reserve("read_ahead", principal)
        except DocqaError as exc:  # the model is stopped (it kept crashing) or unreachable: nothing is read
            reading.state, reading.reason = "failed", exc.detail
            return reading.to_dict()
        threading.Thread(target=self._read, args=(backend, plan, todo, ticket, reading), daemon=True,
                         name="docqa-read-ahead").start()
        return reading.to_dict()

    def _read(self, backend: Backend, plan: Plan, todo: list[tuple[PrefixAt, int]], ticket: Ticket,
              reading: Reading) -> None:
        """Read the set's prefixes one after another under its one ticket (released when done)."""
        with ticket:
            try:
                for p, n in todo:
                    if reading.cancel.is_set():
                        raise Cancelled("The read-ahead was stopped.")
                    base = reading.tokens_done
                    backend.read_ahead(PrefixRead(
                        plan=plan, n_ctx=p.n_ctx, prefix=p.tokens, limit=n if n < len(p.tokens) else 0, yarn=p.yarn,
                        cancel=reading.cancel, evict_before=reading.started_at,
                        on_progress=functools.partial(self._progress, reading, base),
                        on_yield=reading.yielded,
                    ), ticket)
                    reading.tokens_done = base + n
                reading.state = "done"
            except Cancelled:
                reading.state, reading.reason = "stopped", reading.reason or "cancelled"
            except DocqaError as exc:
                if not reading.over:
                    reading.state, reading.reason = "failed", exc.detail
            except Exception as exc:  # noqa: BLE001 - a read-ahead never fails anything else
                log.warning("read-ahead of %s failed: %s", reading.document_ids, exc)
                if not reading.over:
                    reading.state, reading.reason = "failed", str(exc) or type(exc).__name__

    @staticmethod
    def _progress(reading: Reading, base: int, p: dict[str, Any]) -> None:
        if not reading.over:
            reading.state = "reading"
        reading.tokens_done = max(reading.tokens_done, base + int(p.get("tokens_done", 0)))

    def stop_documents(self, document_ids: list[str] | str) -> int:
        """Stop and forget every read-ahead that reads one of `document_ids` (they were deleted): health and the
        plan no longer name them. Returns how many were stopped."""
        gone = {document_ids} if isinstance(document_ids, str) else set(document_ids)
        with self._lock:
            hit = {k: r for k, r in self._readings.items() if gone & set(r.document_ids)}
            for k in hit:
                del self._readings[k]
        stopped = 0
        for r in hit.values():
            if r.state in ACTIVE:
                r.state, r.reason = "stopped", "a document was deleted"
                r.cancel.set()
                stopped += 1
        return stopped

    def drop(self, principal: str, keep: tuple[str, list[str], str] | None = None,
             reason: str = "dropped: the documents are no longer chosen") -> int:
        """Stop `principal`'s read-aheads that are not done, except the set `keep` (model, document ids, mode):
        the client's choice changed or it went away, so nobody is about to ask about them. Returns how many."""
        kept = None if keep is None else (keep[0], sorted(keep[1]), keep[2])
        with self._lock:
            readings = list(self._readings.values())
        dropped = 0
        for r in readings:
            if r.principal != principal or r.state not in ACTIVE:
                continue
            if kept is not None and (r.model, sorted(r.document_ids), r.mode) == kept:
                continue
            r.state, r.reason = "stopped", reason
            r.cancel.set()
            dropped += 1
        return dropped

    def status(self, principal: str | None) -> dict[str, Any]:
        """For /api/health: the caller's read-aheads (none without a valid key), and counts for all."""
        with self._lock:
            readings = list(self._readings.values())
        counts: dict[str, int] = {}
        for r in readings:
            counts[r.state] = counts.get(r.state, 0) + 1
        mine = [r.to_dict() for r in readings if principal is not None and r.principal == principal]
        return {"enabled": self.enabled, "tokens_limit": self.settings.read_ahead_tokens, "counts": counts,
                "sets": mine[-16:]}
