"""Use cases for question sessions: plan, open, ask, list, delete. No HTTP here.

A session fixes a document set, a model and the plan the budget manager chose. Each question is
answered by the engine outside any database transaction; the question and its answer are then
written together in one short transaction, so a failure midway stores nothing half-written.
The session's earlier questions and answers are the conversation the engine carries into the next
question (unless it says `history: false`); the answer's claims, grounding and history go in the
assistant message's `extra`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update

from docqa.documents import DocumentService
from docqa.engine.backend import Spec
from docqa.engine.budget import Plan
from docqa.engine.engine import Answer, AskOptions, Engine, EventSink, Prepared, Sources
from docqa.engine.models import ModelRegistry
from docqa.engine.sources import from_rows
from docqa.errors import ClientGone, DocqaError, DocumentsGone, InvalidRequest, NotFound, short_id
from docqa.readahead import ReadAhead
from docqa.reading import ReadingRates
from docqa.rules import check_document_ids, clean_question
from docqa.store.db import Database
from docqa.store.models import ChatSession, Message, SessionDocument, utcnow
from docqa.text import clean_text


@dataclass
class Accepted:
    """A session's question that passed every check, with what answering it needs."""

    session_id: str
    spec: Spec
    plan: Plan
    sources: Sources
    question: str  # as stored (for a continuation: the request to continue)
    principal: str  # whom the session and every source document belong to
    prepared: Prepared  # what the model is asked, checked once, with its ticket in the model's queue
    turns: list[tuple[str, str]] = field(default_factory=list)  # earlier (question, answer), oldest first
    continues: bool = False  # the question asks to continue the last answer (stored as such)
    asked: str = ""  # continues: the question the unfinished answer answers (what the model is asked again)
    partial: str = ""  # continues: that answer's text so far, which the model goes on from


CONTINUE_QUESTION = ("Continue your previous answer exactly where it stopped. Do not repeat what you already "
                     "wrote and do not start over.")
TITLE_CHARS = 80  # a session titled by its first question keeps this much of it


def plan_from_dict(d: dict[str, Any]) -> Plan:
    return Plan.from_dict(d)


class SessionService:
    def __init__(self, db: Database, documents: DocumentService, registry: ModelRegistry, engine: Engine,
                 reading: ReadAhead | None = None) -> None:
        self.db = db
        self.documents = documents
        self.registry = registry
        self.engine = engine
        self.rates = ReadingRates(db)
        self.reading = reading or ReadAhead(engine)

    def sources(self, document_ids: list[str], principal: str = "") -> Sources:
        check_document_ids(document_ids)
        docs = [self.documents.get(i, principal) for i in document_ids]
        self.engine.counts.check_estimate(docs)  # far past the ceiling: refused before reading any text
        return [from_rows(d, self.documents.all_sections(d.id)) for d in docs]

    def plan(self, document_ids: list[str], model: str | None = None, mode: str | None = None,
             principal: str = "") -> tuple[Spec, Plan]:
        spec = self.registry.get(model)
        return spec, self.engine.plan(spec, self.sources(document_ids, principal), mode)

    def plan_view(self, document_ids: list[str], model: str | None = None, mode: str | None = None,
                  principal: str = "") -> dict[str, Any]:
        """The plan as /api/plan shows it: with how long reading will take at the rate measured for this
        model (reading.py) and whether a snapshot of the reading already exists (then it is near-instant)."""
        spec = self.registry.get(model)
        sources = self.sources(document_ids, principal)
        plan = self.engine.plan(spec, sources, mode)
        snapshot = self.engine.holds(spec, plan, sources) if plan.mode == "whole" else False
        tokens = plan.prompt_tokens if plan.mode == "whole" else plan.prompt_tokens + (plan.n_chunks or 0) * 200
        reading = self.rates.estimate(spec.identity, tokens).to_dict()
        # already_read: a question or a read-ahead (readahead.py) read these documents; the first question
        # starts from the snapshot
        return {**plan.to_dict(), "reading": reading, "snapshot": snapshot, "already_read": snapshot}

    def create(self, document_ids: list[str], model: str | None = None, mode: str | None = None,
               title: str | None = None, principal: str = "", cancel: threading.Event | None = None) -> ChatSession:
        """Plan and store a session; once `cancel` is set (the client went away) nothing is stored."""
        spec, plan = self.plan(document_ids, model, mode, principal)
        if cancel is not None and cancel.is_set():
            raise ClientGone("The client went away before the session was ready; nothing was created.")
        with self.db.transaction() as s:
            auto = not title  # then the first question names the session (ask)
            if not title:
                first = self.documents.get(document_ids[0], principal).filename
                title = first if len(document_ids) == 1 else f"{first} + {len(document_ids) - 1} more"
            session = ChatSession(principal=principal, title=clean_text(title)[:256], model=spec.name, mode=plan.mode,
                                  plan={**plan.to_dict(), "document_ids": list(document_ids), "title_auto": auto})
            s.add(session)
            s.flush()
            s.add_all(SessionDocument(session_id=session.id, document_id=d, position=i)
                      for i, d in enumerate(document_ids))
        threading.Thread(target=self.read_ahead, args=(spec, plan, list(document_ids), principal), daemon=True,
                         name="docqa-read-ahead-start").start()
        return self.get(session.id, principal)

    def read_ahead(self, spec: Spec, plan: Plan, document_ids: list[str], principal: str = "") -> dict[str, Any]:
        """Start reading the documents in the background (readahead.py); never fails the caller."""
        try:
            return self.reading.start(spec, plan, self.sources(document_ids, principal), principal)
        except DocqaError as exc:
            return {"state": "failed", "document_ids": list(document_ids), "reason": exc.detail}

    def get(self, session_id: str, principal: str = "") -> ChatSession:
        with self.db.reader() as s:
            session = s.get(ChatSession, session_id)
            if session is None or session.principal != principal:
                raise NotFound(f"There is no session with id {short_id(session_id)}.")
            _ = session.links, session.messages  # load while the session is open
            return session

    def list_sessions(self, principal: str = "") -> list[ChatSession]:
        with self.db.reader() as s:
            rows = list(s.scalars(select(ChatSession).where(ChatSession.principal == principal)
                                  .order_by(ChatSession.updated_at.desc())))
            for r in rows:
                _ = r.links
            return rows

    def delete(self, session_id: str, principal: str = "") -> None:
        self.get(session_id, principal)
        with self.db.transaction() as s:
            s.delete(s.get(ChatSession, session_id))

    def prepare(self, session_id: str, question: str, opts: AskOptions, principal: str = "",
                continues: bool = False) -> Accepted:
        """Every check that can refuse a question, run before any work starts: a streamed answer
        has already sent its 200 once the first event is out, so a refusal must come first. The
        question itself is checked once, by Engine.prepare, which takes its ticket last."""
        session = self.get(session_id, principal)
        ids = [link.document_id for link in session.links]
        if not ids or len(ids) < len(session.plan.get("document_ids", ids)):
            raise DocumentsGone("The documents of this session were deleted; open a new session.")
        spec = self.registry.get(session.model)
        plan = plan_from_dict(session.plan)
        sources = self.sources(ids, principal)
        turns = conversation(session.messages) if opts.history else []
        asked = partial = ""
        if continues:
            every = conversation(session.messages, drafts=True)
            if not every:
                raise InvalidRequest("There is no earlier answer in this session to continue.")
            # the cut answer goes on in its own turn, from the model's own words (its draft, if withheld)
            (asked, partial) = every[-1]
            turns = conversation(_before_last_turn(session.messages)) if opts.history else []
        # Last, the question takes its ticket in the model's queue, or is refused (503 + Retry-After)
        # here, as JSON before a stream starts; once accepted it is never refused halfway.
        prepared = self.engine.prepare(spec, plan, asked or question, opts, principal=principal)
        stored = clean_question(question, self.engine.settings.question_tokens) if continues else prepared.question
        return Accepted(session_id, spec, plan, sources, stored, principal, prepared, turns, continues, asked, partial)

    def ask(self, session_id: str, question: str, opts: AskOptions, principal: str = "",
            on_event: EventSink | None = None, cancel: threading.Event | None = None,
            accepted: Accepted | None = None) -> Answer:
        p = accepted or self.prepare(session_id, question, opts, principal)
        with p.prepared.ticket:
            if p.session_id != session_id or p.principal != principal:
                raise NotFound(f"There is no session with id {short_id(session_id)}.")
            if p.continues:
                opts = replace(opts, continue_from=p.partial)
            answer = self.engine.run(p.spec, p.plan, p.sources, p.prepared, opts, on_event, cancel, turns=p.turns)
        with self.db.transaction() as s:
            s.add(Message(session_id=session_id, role="user", content=p.question, timings={},
                          extra={"continues": True} if p.continues else {}))
            s.add(Message(
                session_id=session_id, role="assistant", content=answer.answer, thinking=answer.thinking or None,
                citations=answer.citations, mode=answer.mode,
                timings={**answer.timings, "model_identity": p.spec.identity},  # reading.py keys rates by it
                extra=answer.extra(),  # every field of the live answer: nothing is lost by storing it
            ))
            s.execute(update(ChatSession).where(ChatSession.id == session_id).values(updated_at=_now()))
            session = s.get(ChatSession, session_id)
            if session is not None and session.plan.get("title_auto") and not p.continues:
                # the first question names a session opened without a title
                session.title = _title_of(p.question)
                session.plan = {**session.plan, "title_auto": False}
        return answer


def conversation(messages: list[Message], drafts: bool = False) -> list[tuple[str, str]]:
    """The (question, answer) pairs of a session's messages, oldest first (thinking never included).
    A continuation belongs to the answer it continues: the model sees that answer whole. An answer
    withheld as unsupported is left out with its question (and its continuations): docqa's note in its
    place is not something the model said, and the model's draft is not what the user saw, so neither
    may steer later answers. With `drafts` it is the model's own text (what "continue" goes on from)."""
    turns: list[tuple[str, str]] = []
    withheld: list[bool] = []
    question: str | None = None
    continues = False
    for m in messages:
        if m.role == "user":
            question, continues = m.content, bool((m.extra or {}).get("continues"))
        elif m.role == "assistant" and question is not None:
            draft = (m.extra or {}).get("draft")
            text = (draft or m.content) if drafts else m.content
            if continues and turns:
                turns[-1] = (turns[-1][0], turns[-1][1] + text)
                withheld[-1] = withheld[-1] or bool(draft)
            else:
                turns.append((question, text))
                withheld.append(bool(draft))
            question = None
    return turns if drafts else [t for t, held in zip(turns, withheld, strict=True) if not held]


def _before_last_turn(messages: list[Message]) -> list[Message]:
    """The messages before the last turn (its question, its answer and their continuations)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "user" and not (m.extra or {}).get("continues"):
            return messages[:i]
    return []


def _title_of(question: str) -> str:
    text = " ".join(clean_text(question).split())
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[:TITLE_CHARS].rsplit(" ", 1)[0] or text[:TITLE_CHARS]
    return cut.rstrip(" ,;:") + "…"


def _now():  # noqa: ANN202
    return utcnow()
