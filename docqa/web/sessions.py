"""/api/plan, /api/sessions and their questions (JSON or Server-Sent Events), /api/models."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from docqa.engine.engine import AskOptions
from docqa.engine.models import ModelRegistry
from docqa.errors import DocqaError
from docqa.sessions import Prepared, SessionService
from docqa.store.models import ChatSession, Message, iso_utc
from docqa.web.access import RATE


@dataclass
class PlanIn:
    document_ids: list[str]
    model: str | None = None
    mode: str | None = None


@dataclass
class SessionIn:
    document_ids: list[str]
    model: str | None = None
    mode: str | None = None
    title: str | None = None


@dataclass
class QuestionIn:
    question: str
    thinking: bool | None = None
    max_tokens: int | None = None
    sampling: dict[str, float] = field(default_factory=dict)


def message_out(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "role": m.role, "content": m.content, "created_at": iso_utc(m.created_at)}
    if m.role == "assistant":
        out.update(thinking=m.thinking or "", citations=m.citations, mode=m.mode, timings=m.timings, **(m.extra or {}))
    return out


def session_out(s: ChatSession, with_messages: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id, "title": s.title, "model": s.model, "mode": s.mode, "plan": s.plan,
        "document_ids": [link.document_id for link in s.links],
        "created_at": iso_utc(s.created_at), "updated_at": iso_utc(s.updated_at),
    }
    if with_messages:
        out["messages"] = [message_out(m) for m in s.messages]
    return out


class SessionController(Controller):
    path = "/api"
    tags = ["sessions"]

    @post("/plan", sync_to_thread=True, status_code=200, summary="The budget manager's plan, allocating nothing")
    def plan(self, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
             data: JSONBody[PlanIn]) -> dict[str, Any]:
        _, plan = sessions.plan(data.document_ids, data.model, data.mode, owner=principal)
        return plan.to_dict()

    @post("/sessions", sync_to_thread=True, status_code=201, summary="Open a question session over documents")
    def create(self, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
               data: JSONBody[SessionIn]) -> dict[str, Any]:
        return session_out(sessions.create(data.document_ids, data.model, data.mode, data.title, owner=principal))

    @get("/sessions", sync_to_thread=True, summary="List sessions, newest activity first")
    def list_sessions(self, sessions: NamedDependency[SessionService],
                      principal: NamedDependency[str]) -> list[dict[str, Any]]:
        return [session_out(s, with_messages=False) for s in sessions.list_sessions(principal)]

    @get("/sessions/{session_id:str}", sync_to_thread=True, summary="A session with its plan and history")
    def get_session(self, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
                    session_id: FromPath[str]) -> dict[str, Any]:
        return session_out(sessions.get(session_id, principal))

    @delete("/sessions/{session_id:str}", sync_to_thread=True, summary="Delete a session and its messages")
    def delete_session(self, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
                       session_id: FromPath[str]) -> None:
        sessions.delete(session_id, principal)

    @post("/sessions/{session_id:str}/questions", status_code=200,
          summary="Ask a question; send Accept: text/event-stream to stream progress, thinking and tokens",
          opt={RATE: "questions"})
    async def ask(self, request: Request, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
                  session_id: FromPath[str], data: JSONBody[QuestionIn]) -> Response[dict[str, Any]] | ServerSentEvent:
        opts = AskOptions(thinking=data.thinking, max_tokens=data.max_tokens, sampling=data.sampling or {})
        # Every refusal (404, 409, 422) is answered as JSON here, before a stream could start.
        # The session and its documents are looked up as the principal's own (404 otherwise); the stream
        # and the answer below work only from `prepared`, so no other principal's text can reach the model.
        prepared = await to_thread.run_sync(sessions.prepare, session_id, data.question, opts, principal)
        if "text/event-stream" in request.headers.get("accept", ""):
            return ServerSentEvent(_stream(sessions, prepared, opts))
        cancel = threading.Event()
        try:
            answer = await to_thread.run_sync(
                lambda: sessions.ask(session_id, data.question, opts, principal, cancel=cancel, prepared=prepared))
        except asyncio.CancelledError:
            cancel.set()
            raise
        return Response(answer.to_dict())


async def _stream(sessions: SessionService, prepared: Prepared,
                  opts: AskOptions) -> AsyncIterator[ServerSentEventMessage]:
    """Run the question on its own thread and relay its events; a client that goes away cancels it.

    Its own thread, not the loop's shared executor: that pool is small and queues silently, and a
    question parked there would not yet count against the model's bounded queue (DOCQA_QUEUE_SIZE)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    cancel = threading.Event()
    finished = asyncio.Event()

    def emit(kind: str, payload: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))

    def work() -> None:
        try:
            answer = sessions.ask(prepared.session_id, prepared.question, opts, prepared.owner, on_event=emit,
                                  cancel=cancel, prepared=prepared)
            emit("done", answer.to_dict())
        except DocqaError as exc:
            emit("error", {"status_code": exc.status_code, "detail": exc.detail})
        except Exception:  # noqa: BLE001 - reported to the client, logged by the thread
            emit("error", {"status_code": 500, "detail": "Something went wrong inside docqa; nothing was stored."})
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
            loop.call_soon_threadsafe(finished.set)

    threading.Thread(target=work, name="docqa-stream", daemon=True).start()
    try:
        while (item := await queue.get()) is not None:
            kind, payload = item
            yield ServerSentEventMessage(event=kind, data=json.dumps(payload, ensure_ascii=False))
    finally:
        cancel.set()
        await asyncio.shield(finished.wait())


@get("/api/models", sync_to_thread=True, tags=["models"], summary="Models with context and KV bytes per token")
def list_models(registry: NamedDependency[ModelRegistry]) -> list[dict[str, Any]]:
    return [spec.describe() for spec in registry.list()]
