"""The batch worker: one background thread that answers queued batch items, crash-safe.

The jobs live in the database (`batch_items`), never only in memory, so every instance sharing one
PostgreSQL database works the same batches, each item exactly once:
- claim: in one short transaction, take the next queued item (or one whose lease expired), set
  `lease_holder` (host:pid:random) and `lease_expires_at` (now + lease), attempts += 1. SQLite takes
  its write lock up front (`BEGIN IMMEDIATE`); PostgreSQL reads with `SELECT … FOR UPDATE SKIP
  LOCKED`, so two workers never claim one item and never wait for each other's candidate.
  The item of the document set answered last is preferred, so a set's questions run back to back
  and the model's resident prefix is reused (see batches.py);
- answer outside any transaction, while a heartbeat thread extends the lease; when the lease is
  lost (another worker took the item over, or the batch was cancelled) the answer is stopped;
- write answer, citations, mode, timings and `done` in one transaction, only where the lease is
  still ours and the item still running: an answer is never written twice;
- at start, give back the items whose lease expired or whose lease holder is gone. On PostgreSQL each
  worker holds an advisory lock named after its lease holder for as long as it lives (released by the
  server when its connection dies, whatever host it ran on): a lease whose lock is free has a dead
  holder. On SQLite (one host) the holder is gone when its pid no longer runs. A crash between claim and write
  loses only that one answer, which is redone, never duplicated; a live instance's items are never
  taken before their lease expires;
- after `batch_max_attempts` claims an item is marked failed with the reason; errors that
  retrying cannot fix (document deleted, question refused, context too large) fail it at once.
  Stopping the worker (shutdown) or a busy model puts the item back without counting the try.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psutil
from sqlalchemy import or_, select, update
from sqlalchemy.exc import OperationalError

from docqa.batches import ALL_DOCUMENTS, BatchService, refresh_status
from docqa.engine.budget import Plan
from docqa.engine.engine import AskOptions, Sources
from docqa.engine.sources import from_rows
from docqa.errors import Cancelled, DocqaError, ModelCrashed, ModelFailed, NotFound, PlanFailed, QueueFull
from docqa.sessions import plan_from_dict
from docqa.store.models import Batch, BatchItem, utcnow

log = logging.getLogger(__name__)

_LIVE_HOLDERS: set[str] = set()  # lease holders of the workers running in this process
_HOST = socket.gethostname()


@dataclass
class Claim:
    item_id: int
    batch_id: str
    document_id: str | None
    question: str
    attempts: int
    cancel: threading.Event = field(default_factory=threading.Event)


class BatchWorker:
    def __init__(self, service: BatchService, *, lease_s: float | None = None, max_attempts: int | None = None,
                 poll_s: float = 2.0) -> None:
        self.service = service
        self.db = service.db
        self.engine = service.engine
        self.lease = timedelta(seconds=lease_s or service.settings.batch_lease_s)
        self.heartbeat_s = max(0.5, self.lease.total_seconds() / 4)
        self.max_attempts = max_attempts or service.settings.batch_max_attempts
        self.poll_s = poll_s
        self.lease_holder = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: Claim | None = None
        self._last: tuple[str, str | None] | None = None  # (batch, document) answered last
        self._last_principal: str | None = None  # the principal served last (round robin between principals)
        self._last_by_principal: dict[str, tuple[str, str | None]] = {}  # each principal's set answered last
        self._sources: tuple[tuple[str, str | None], Sources] | None = None
        self._alive: Any = None  # the advisory lock marking this worker alive (PostgreSQL)
        _LIVE_HOLDERS.add(self.lease_holder)

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._alive = self.db.hold("worker", self.lease_holder)
        self.service.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name="docqa-batch-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        current = self._current
        if current is not None:
            current.cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.service.unsubscribe(self._on_event)
        _LIVE_HOLDERS.discard(self.lease_holder)
        self.db.release(self._alive)
        self._alive = None

    def _on_event(self, event: str, batch_id: str) -> None:
        if event == "created":
            self._wake.set()
        elif event == "cancelled":
            current = self._current
            if current is not None and current.batch_id == batch_id:
                current.cancel.set()

    def _loop(self) -> None:
        try:
            self.reclaim()
        except Exception:  # noqa: BLE001 - logged; expired leases are still taken over by claim()
            log.exception("batch worker: reclaiming leases failed")
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._keep_alive()
                worked = self.run_once()
            except Exception:  # noqa: BLE001 - the thread must survive a database hiccup
                log.exception("batch worker: unexpected error")
                worked = False
            if not worked:
                self._wake.wait(self.poll_s)

    # -- leases ---------------------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        """Take the liveness lock again when its connection was lost (the database restarted meanwhile)."""
        if not self.db.shared:
            return
        try:
            if self._alive is not None:
                self._alive.exec_driver_sql("SELECT 1")
                self._alive.commit()
                return
        except Exception:  # noqa: BLE001 - a broken connection: its lock is gone
            self.db.release(self._alive)
            self._alive = None
        self._alive = self.db.hold("worker", self.lease_holder)

    def _holder_gone(self, holder: str | None) -> bool:
        """True when `holder` is a worker that no longer runs: on PostgreSQL, its liveness lock is free; on
        SQLite, a process of this host that no longer runs."""
        if not holder:
            return True
        if holder in _LIVE_HOLDERS:
            return False
        held = self.db.held_elsewhere("worker", holder)
        if held is not None:
            return not held
        parts = holder.rsplit(":", 2)  # host:pid:random
        if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
            return False
        pid = int(parts[1])
        if pid == os.getpid():
            return holder not in _LIVE_HOLDERS  # an earlier life of this pid (e.g. pid 1 in a container)
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:  # cannot tell (e.g. access denied): wait for the lease to expire
            return False

    def reclaim(self) -> int:
        """Give back (running → queued) the items whose lease expired or whose lease holder is gone."""
        now = utcnow()
        with self.db.immediate() as s:
            rows = s.execute(select(BatchItem.id, BatchItem.lease_holder, BatchItem.lease_expires_at)
                             .where(BatchItem.status == "running")
                             .with_for_update(skip_locked=True)).all()  # SQLite: its write lock already
            stale = [i for i, holder, expires in rows
                     if expires is None or expires <= now or self._holder_gone(holder)]
            if stale:
                s.execute(update(BatchItem).where(BatchItem.id.in_(stale), BatchItem.status == "running")
                          .values(status="queued", lease_holder=None, lease_expires_at=None, updated_at=now)
                          .execution_options(synchronize_session=False))
        if stale:
            log.info("batch worker: %d interrupted question(s) queued again", len(stale))
        return len(stale)

    def claim(self, batch_id: str | None = None) -> Claim | None:
        now = utcnow()
        claimable = or_(BatchItem.status == "queued",
                        (BatchItem.status == "running") & (BatchItem.lease_expires_at < now))
        with self.db.immediate() as s:
            while True:
                # FOR UPDATE SKIP LOCKED on PostgreSQL (an item another worker is claiming is passed over);
                # SQLite ignores it and holds its database write lock instead (BEGIN IMMEDIATE)
                query = (select(BatchItem).where(claimable).order_by(BatchItem.id).limit(1)
                         .with_for_update(skip_locked=True))
                if batch_id is not None:
                    query = query.where(BatchItem.batch_id == batch_id)
                # Principals take turns (round robin): the next principal after the last one served, among
                # those with items to answer, so one principal's long batch cannot starve another's.
                principal = self._next_principal(s, claimable, batch_id)
                if principal is not None:
                    query = query.where(BatchItem.batch_id.in_(select(Batch.id).where(Batch.principal == principal)))
                item = None
                last = self._last_by_principal.get(principal) if principal is not None else self._last
                if last is not None:  # the same document set first: its prefix is resident (or snapshotted)
                    last_batch, last_doc = last
                    item = s.scalars(query.where(BatchItem.batch_id == last_batch,
                                                 BatchItem.document_id.is_(None) if last_doc is None
                                                 else BatchItem.document_id == last_doc)).first()
                item = item or s.scalars(query).first()
                if item is None:
                    return None
                if item.attempts >= self.max_attempts:
                    item.status = "failed"
                    item.error = (f"Gave up after {item.attempts} attempts: "
                                  f"{item.error or 'the worker stopped while answering it'}")
                    item.lease_holder = item.lease_expires_at = None
                    item.updated_at = now
                    s.flush()
                    refresh_status(s, item.batch_id)
                    continue
                item.status = "running"
                if principal is not None:
                    self._last_principal = principal
                    self._last_by_principal[principal] = (item.batch_id, item.document_id)
                item.lease_holder = self.lease_holder
                item.lease_expires_at = now + self.lease
                item.attempts += 1
                item.updated_at = now
                s.flush()
                refresh_status(s, item.batch_id)
                return Claim(item.id, item.batch_id, item.document_id, item.question, item.attempts)

    def _next_principal(self, s: Any, claimable: Any, batch_id: str | None) -> str | None:
        """The principal whose turn it is; None when only one has items (no turns to take)."""
        if batch_id is not None:
            return None
        principals = sorted(set(s.scalars(select(Batch.principal).join(BatchItem, BatchItem.batch_id == Batch.id)
                                      .where(claimable))))
        if len(principals) < 2:
            return None
        after = [o for o in principals if self._last_principal is not None and o > self._last_principal]
        return after[0] if after else principals[0]

    def _heartbeat(self, claim: Claim, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_s):
            try:
                with self.db.immediate() as s:
                    held = s.execute(
                        update(BatchItem)
                        .where(BatchItem.id == claim.item_id, BatchItem.lease_holder == self.lease_holder,
                               BatchItem.status == "running")
                        .values(lease_expires_at=utcnow() + self.lease)
                        .execution_options(synchronize_session=False)
                    ).rowcount  # type: ignore[attr-defined]
            except OperationalError as exc:  # busy database: try again at the next beat
                log.warning("batch worker: heartbeat failed: %s", exc)
                continue
            if not held:  # cancelled, or another worker took it over: stop answering
                claim.cancel.set()
                return

    def _finish(self, claim: Claim, status: str, *, uncount: bool = False, **values: Any) -> bool:
        """Write the item's outcome where the lease is still ours; False when it no longer is."""
        with self.db.immediate() as s:
            changes: dict[str, Any] = dict(status=status, lease_holder=None, lease_expires_at=None,
                                           updated_at=utcnow(), **values)
            if uncount:
                changes["attempts"] = BatchItem.attempts - 1
            written = s.execute(
                update(BatchItem)
                .where(BatchItem.id == claim.item_id, BatchItem.lease_holder == self.lease_holder,
                       BatchItem.status == "running")
                .values(**changes).execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if written:
                refresh_status(s, claim.batch_id)
        if not written:
            log.info("batch worker: item %d is no longer ours (cancelled or taken over); result dropped",
                     claim.item_id)
        return bool(written)

    # -- answering ------------------------------------------------------------------------------------

    def run_once(self, batch_id: str | None = None) -> bool:
        """Claim and settle one item; False when there was nothing to claim."""
        claim = self.claim(batch_id)
        if claim is None:
            return False
        self._last = (claim.batch_id, claim.document_id)
        self._current = claim
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, done), name="docqa-batch-lease", daemon=True)
        beat.start()
        try:
            self._answer(claim)
        finally:
            done.set()
            self._current = None
            beat.join()
        return True

    def _answer(self, claim: Claim) -> None:
        t0 = time.perf_counter()
        try:
            with self.db.reader() as s:
                batch = s.get(Batch, claim.batch_id)
            if batch is None:  # deleted together with its items meanwhile
                return
            spec = self.service.registry.get(batch.model)
            sources = self._sources_for(batch, claim.document_id)
            plan = self._plan_for(batch, claim.document_id or ALL_DOCUMENTS, spec, sources)
            options = batch.options or {}
            opts = AskOptions(thinking=options.get("thinking"), max_tokens=options.get("max_tokens"),
                              sampling=options.get("sampling") or {}, history=False)  # each question alone
            # checked once (its tokens, budget and sampling), its ticket taken last, in the batch class
            prepared = self.engine.prepare(spec, plan, claim.question, opts, klass="batch", principal=batch.principal)
            with prepared.ticket:
                answer = self.engine.run(spec, plan, sources, prepared, opts, None, claim.cancel)
        except Cancelled:
            if self._stop.is_set():  # shutting down: someone else (or the next start) answers it
                self._finish(claim, "queued", uncount=True)
            else:
                self._finish(claim, "cancelled", error="Cancelled while it was being answered.")
        except (QueueFull, ModelFailed) as exc:  # busy with people's questions, or stopped: not this item's fault
            self._finish(claim, "queued", uncount=True, error=exc.detail)
            self._stop.wait(5.0)
        except ModelCrashed as exc:  # the runner died under this item: back under its lease, up to max_attempts
            if claim.attempts >= self.max_attempts:
                self._finish(claim, "failed", error=f"Gave up after {claim.attempts} attempts: {exc.detail}")
            else:
                self._finish(claim, "queued", error=exc.detail)
        except DocqaError as exc:  # the question or its documents cannot be answered; retrying won't help
            self._finish(claim, "failed", error=exc.detail)
        except Exception as exc:  # noqa: BLE001 - recorded on the item, retried up to max_attempts
            if self._stop.is_set():
                self._finish(claim, "queued", uncount=True)
                return
            log.exception("batch worker: item %d failed", claim.item_id)
            reason = f"{type(exc).__name__}: {exc}"
            if claim.attempts >= self.max_attempts:
                self._finish(claim, "failed", error=f"Gave up after {claim.attempts} attempts: {reason}")
            else:
                self._finish(claim, "queued", error=reason)
        else:
            timings = {**answer.timings, "item_s": round(time.perf_counter() - t0, 3), "model_identity": spec.identity}
            self._finish(claim, "done", answer=answer.answer, thinking=answer.thinking or None,
                         citations=answer.citations, mode=answer.mode, timings=timings, error=None,
                         extra=answer.extra())

    def _sources_for(self, batch: Batch, document_id: str | None) -> Sources:
        key = (batch.id, document_id)
        if self._sources is not None and self._sources[0] == key:
            return self._sources[1]
        ids = [document_id] if document_id else list(batch.document_ids)
        documents = self.service.documents
        sources: Sources = []
        for i in ids:
            try:
                doc = documents.get(i, batch.principal)
            except NotFound as exc:
                raise NotFound(f"The document {i!r} was deleted before this question was answered.") from exc
            sources.append(from_rows(doc, documents.all_sections(i)))
        self._sources = (key, sources)
        return sources

    def _plan_for(self, batch: Batch, key: str, spec: Any, sources: Sources) -> Plan:
        """The document set's plan for this batch: computed once, stored, then reused by every item."""
        stored = (batch.plans or {}).get(key)
        if stored is None:
            try:
                computed: dict[str, Any] = {**self.engine.plan(spec, sources, batch.mode).to_dict(),
                                            "document_ids": [d.id for d, _ in sources]}
            except DocqaError as exc:  # e.g. too large for any context: every item of this set fails alike
                computed = {"error": exc.detail}
            with self.db.immediate() as s:
                row = s.get(Batch, batch.id, with_for_update=True)  # another instance may plan it at once
                if row is None:
                    raise NotFound("The batch was deleted.")
                stored = (row.plans or {}).get(key)
                if stored is None:  # first to plan this set: store it (a JSON column is replaced, not mutated)
                    row.plans = {**(row.plans or {}), key: computed}
                    stored = computed
        if "error" in stored:
            raise PlanFailed(stored["error"])
        return plan_from_dict(stored)


