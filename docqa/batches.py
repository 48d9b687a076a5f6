"""Batch questions: many questions over documents, answered in the background. No HTTP here.

A batch is a row in `batches` and one row per answer to produce in `batch_items`: one per question
over the document set together, or one per document × question with `per_document`. Creating a
batch validates everything first (documents, questions, model, options) and then stores the batch
and its items in one transaction, so a refused batch leaves nothing behind.

Answering is the worker's job (worker.py), and it is ordered so each document set is read once:
- items are created grouped by document set (per_document: document by document), and the worker
  claims the next item of the set it just answered before anything else, so all questions over one
  set run back to back on the same model runtime, whose context keeps the set's prefix resident;
- the set's plan (mode, context size, KV type) is computed once per batch by `Engine.plan` and
  stored in `batches.plans` (keyed by document id, or "*" for the whole set), so every question
  runs with the same context configuration and `Engine.answer` reuses the prefix: the first
  question evaluates the documents, the others evaluate only their own few tokens.

A batch's status is derived from its items: queued (nothing started), running, done (every item
done, failed or cancelled), failed (every item failed) or cancelled (cancelled by a person; the
items not answered by then are marked cancelled). `cancel()` marks the open items cancelled in
one transaction and tells the worker, which stops the question in flight at its next token.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from docqa.documents import DocumentService
from docqa.engine.engine import Answer, Engine
from docqa.engine.models import ModelRegistry
from docqa.errors import InvalidRequest, NotFound, short_id
from docqa.location import Location
from docqa.rules import check_document_ids, check_max_tokens, check_mode, check_question_tokens, clean_question
from docqa.settings import Settings
from docqa.store.db import Database
from docqa.store.models import Batch, BatchItem, Document, iso_utc, utcnow

log = logging.getLogger(__name__)

OPEN = ("queued", "running")
TERMINAL = ("done", "failed", "cancelled")
ALL_DOCUMENTS = "*"  # the plans key of a batch that asks its questions of the whole document set
CSV_COLUMNS = ["filename", "question_no", "question", "answer", "citations", "grounding", "sources", "mode",
               "status", "error"]

Listener = Callable[[str, str], None]  # (event: "created" | "cancelled", batch_id)


def derive_status(counts: dict[str, int], cancelled: bool) -> str:
    """The batch's status from its items' statuses (see the module docstring)."""
    total = sum(counts.values())
    if cancelled:
        return "cancelled"
    if counts.get("queued", 0) or counts.get("running", 0):
        started = total - counts.get("queued", 0)
        return "running" if started else "queued"
    if total and counts.get("failed", 0) == total:
        return "failed"
    return "done"


def item_counts(s: Session, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    rows = s.execute(
        select(BatchItem.batch_id, BatchItem.status, func.count())
        .where(BatchItem.batch_id.in_(batch_ids)).group_by(BatchItem.batch_id, BatchItem.status)
    )
    out: dict[str, dict[str, int]] = {b: {} for b in batch_ids}
    for batch_id, status, n in rows:
        out[batch_id][status] = int(n)
    return out


def refresh_status(s: Session, batch_id: str) -> str:
    """Store the derived status on the batch row (inside the caller's transaction); return it. The row is
    locked first (PostgreSQL), so two instances settling items of one batch at once count in turn, each
    seeing the other's committed item, and the stored status is never a stale count."""
    batch = s.get(Batch, batch_id, with_for_update=True, populate_existing=True)
    if batch is None:
        return "gone"
    status = derive_status(item_counts(s, [batch_id])[batch_id], batch.status == "cancelled")
    if batch.status != status:
        batch.status = status
        batch.updated_at = utcnow()
    return status


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: no formula injection from document or model text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def citation_text(c: dict[str, Any], with_filename: bool = False) -> str:
    """`p. 3: "quote"` or `notes.md:L4-L6: "quote"`, as a person would write it (location.py's label)."""
    where = Location.of(c).label(with_filename=with_filename)
    text = f'{where}: "{c["quote"]}"' if c.get("quote") else where
    return text if c.get("verified", True) else text + " (not verified)"


def grounding_text(counts: dict[str, int]) -> str:
    """`3 grounded, 1 unsupported` (plus restatements and "not in the documents" when there are any)."""
    if not counts:
        return ""
    text = f"{counts.get('grounded', 0)} grounded, {counts.get('unsupported', 0)} unsupported"
    extra = [f"{counts[k]} {label}" for k, label in (("not_in_documents", "not in the documents"),
                                                      ("restates_question", "restating the question")) if counts.get(k)]
    return "; ".join([text, *extra])


def sources_text(claims: list[dict[str, Any]], with_filename: bool = False) -> str:
    """One line per claim: where its passage is and the passage, or UNSUPPORTED and the claim."""
    lines = []
    for c in claims:
        p = c.get("passage")
        if c["status"] in ("quoted", "supported") and p:
            cite = {**p, "quote": p.get("quote") or p["text"], "verified": True}
            lines.append(f"[{c['status']}] {citation_text(cite, with_filename)}")
        elif c["status"] == "unsupported":
            lines.append(f'[unsupported] "{c["text"]}"')
    return "\n".join(lines)


class BatchService:
    def __init__(self, settings: Settings, db: Database, documents: DocumentService, registry: ModelRegistry,
                 engine: Engine) -> None:
        self.settings = settings
        self.db = db
        self.documents = documents
        self.registry = registry
        self.engine = engine
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, event: str, batch_id: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, batch_id)
            except Exception:  # noqa: BLE001 - a listener must not fail the request
                log.exception("batch listener failed")

    # -- create ---------------------------------------------------------------------------------------

    def create(self, document_ids: list[str], questions: list[str], model: str | None = None,
               mode: str | None = None, per_document: bool = False, max_tokens: int | None = None,
               sampling: dict[str, float | str] | None = None, thinking: bool | None = None,
               principal: str = "") -> dict[str, Any]:
        s = self.settings
        check_document_ids(document_ids)
        if not questions:
            raise InvalidRequest("Add at least one question (questions is empty).")
        if len(questions) > s.batch_max_questions:
            raise InvalidRequest(
                f"A batch may hold at most {s.batch_max_questions:,} questions; this one has {len(questions):,}.",
                limit=s.batch_max_questions,
            )
        n_items = len(questions) * (len(document_ids) if per_document else 1)
        if n_items > s.batch_max_items:
            raise InvalidRequest(
                f"This batch would produce {n_items:,} answers; the limit is {s.batch_max_items:,}. "
                "Ask fewer questions or of fewer documents.", limit=s.batch_max_items,
            )
        check_mode(mode)
        # The plan is made later, per document set (worker.py), so the cap here is the settings' budget.
        check_max_tokens(max_tokens, s.answer_tokens, "the answer budget (DOCQA_ANSWER_TOKENS)")
        docs = [self.documents.get(doc_id, principal) for doc_id in document_ids]  # 404 with a sentence when unknown
        for group in ([d] for d in docs) if per_document else [docs]:
            self.engine.counts.check_estimate(group)  # a set far past DOCQA_MAX_SET_TOKENS: refused now
        spec = self.registry.get(model)
        self.engine.sampling(spec, dict(sampling or {}))  # refuses unknown or out-of-range options
        cleaned = [self._check_question(spec, i, q) for i, q in enumerate(questions)]

        with self.db.transaction() as tx:
            batch = Batch(
                principal=principal, status="queued", document_ids=list(document_ids), questions=cleaned,
                model=spec.name,
                mode=None if mode in (None, "auto") else mode, per_document=bool(per_document),
                options={"max_tokens": max_tokens, "sampling": dict(sampling or {}), "thinking": thinking},
                plans={},
            )
            tx.add(batch)
            tx.flush()
            targets: list[str | None] = list(document_ids) if per_document else [None]
            tx.add_all(  # grouped by document set: the worker answers them in this order
                BatchItem(batch_id=batch.id, document_id=d, question_index=i, question=q, status="queued",
                          citations=[], timings={}, attempts=0)
                for d in targets for i, q in enumerate(cleaned)
            )
        self._notify("created", batch.id)
        return {"id": batch.id, "status": "queued", "total": n_items}

    def _check_question(self, spec: Any, index: int, question: Any) -> str:
        label = f"Question {index + 1}"
        q = clean_question(question, self.settings.question_tokens, label)
        # counted as Engine.prepare counts it when the item is answered (the prompt's question piece)
        check_question_tokens(q, self.engine.count_question(spec, q), self.settings.question_tokens, label)
        return q

    # -- read -----------------------------------------------------------------------------------------

    def _owned(self, s: Session, batch_id: str, principal: str) -> Batch:
        batch = s.get(Batch, batch_id)
        if batch is None or batch.principal != principal:
            raise NotFound(f"There is no batch with id {short_id(batch_id)}.")
        return batch

    @staticmethod
    def _summary(batch: Batch, counts: dict[str, int]) -> dict[str, Any]:
        total = sum(counts.values())
        return {
            "id": batch.id, "status": derive_status(counts, batch.status == "cancelled"),
            "done": counts.get("done", 0), "failed": counts.get("failed", 0),
            "cancelled": counts.get("cancelled", 0), "running": counts.get("running", 0),
            "queued": counts.get("queued", 0), "total": total,
            "document_ids": list(batch.document_ids), "n_questions": len(batch.questions),
            "first_question": batch.questions[0] if batch.questions else None,
            "per_document": batch.per_document, "model": batch.model, "mode": batch.mode,
            "options": batch.options, "error": batch.error,
            "created_at": iso_utc(batch.created_at), "updated_at": iso_utc(batch.updated_at),
        }

    def list_batches(self, principal: str = "") -> list[dict[str, Any]]:
        with self.db.reader() as s:
            batches = list(s.scalars(select(Batch).where(Batch.principal == principal)
                                     .order_by(Batch.created_at.desc())))
            counts = item_counts(s, [b.id for b in batches])
            return [self._summary(b, counts[b.id]) for b in batches]

    def get(self, batch_id: str, principal: str = "") -> dict[str, Any]:
        with self.db.reader() as s:
            batch = self._owned(s, batch_id, principal)
            items = list(s.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.id)))
            names = self._filenames(s, batch.document_ids)
            counts: dict[str, int] = {}
            for it in items:
                counts[it.status] = counts.get(it.status, 0) + 1
            return {**self._summary(batch, counts), "results": [self._item_out(it, names) for it in items]}

    def results(self, batch_id: str, principal: str = "") -> list[dict[str, Any]]:
        return self.get(batch_id, principal)["results"]

    def results_csv(self, batch_id: str, principal: str = "") -> str:
        """UTF-8 text with a byte-order mark (spreadsheets then read it as UTF-8), a header row and
        one row per document × question (per question for a document set)."""
        batch = self.get(batch_id, principal)
        with self.db.reader() as s:
            names = self._filenames(s, batch["document_ids"])
        set_name = "; ".join(names.get(d, d) for d in batch["document_ids"])
        many = len(batch["document_ids"]) > 1
        out = io.StringIO()
        writer = csv.writer(out)  # excel dialect: quoted as needed, CRLF rows
        writer.writerow(CSV_COLUMNS)
        for r in batch["results"]:
            filename = r["filename"] or set_name
            cites = "; ".join(citation_text(c, with_filename=many and r["document_id"] is None)
                              for c in r["citations"])
            writer.writerow([_cell(filename), r["question_index"] + 1, _cell(r["question"]), _cell(r["answer"]),
                             _cell(cites), grounding_text(r["grounding"]),
                             _cell(sources_text(r["claims"], with_filename=many and r["document_id"] is None)),
                             r["mode"] or "", r["status"], _cell(r["error"])])
        return "\ufeff" + out.getvalue()

    @staticmethod
    def _filenames(s: Session, document_ids: list[str]) -> dict[str, str]:
        rows = s.execute(select(Document.id, Document.filename).where(Document.id.in_(document_ids)))
        return {i: name for i, name in rows}

    @staticmethod
    def _item_out(it: BatchItem, names: dict[str, str]) -> dict[str, Any]:
        return {
            "id": it.id, "document_id": it.document_id,
            "filename": names.get(it.document_id, it.document_id) if it.document_id else None,
            "question_index": it.question_index, "question": it.question, "status": it.status,
            "answer": it.answer, "thinking": it.thinking or "", "citations": it.citations or [], "mode": it.mode,
            "timings": it.timings or {}, "error": it.error, "attempts": it.attempts,
            **Answer.from_record(it.extra or {}).extra(),  # the answer's record, as a live answer has it
        }

    # -- cancel ---------------------------------------------------------------------------------------

    def cancel(self, batch_id: str, principal: str = "") -> dict[str, Any]:
        """Cancel what is not answered yet; answers already written stay. Cancelling twice is fine."""
        with self.db.immediate() as s:
            batch = self._owned(s, batch_id, principal)
            changed = s.execute(
                update(BatchItem)
                .where(BatchItem.batch_id == batch_id, BatchItem.status.in_(OPEN))
                .values(status="cancelled", lease_holder=None, lease_expires_at=None, updated_at=utcnow(),
                        error="Cancelled before it was answered.")
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]  # a CursorResult at run time
            if changed:
                batch.status = "cancelled"
                batch.updated_at = utcnow()
        if changed:
            self._notify("cancelled", batch_id)
        return self.get(batch_id, principal)
