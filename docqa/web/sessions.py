"""/api/plan, /api/sessions and their questions (JSON or Server-Sent Events), /api/models."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage
from msgspec import Meta

from docqa.engine.engine import Answer, AskOptions
from docqa.engine.models import ModelRegistry
from docqa.errors import DocqaError
from docqa.fetch import SMOLLM2
from docqa.sessions import CONTINUE_QUESTION, Accepted, SessionService
from docqa.store.models import ChatSession, Message, iso_utc
from docqa.web.access import RATE
from docqa.web.costly import COSTLY, run_costly, run_on_lane
from docqa.web.schemas import JSON_BODY_LIMIT, DocumentIds, MaxTokens, Name, SamplingIn

log = logging.getLogger(__name__)


@dataclass
class PlanIn:
    document_ids: DocumentIds
    model: Name | None = None
    mode: Name | None = None


@dataclass
class SessionIn:
    document_ids: DocumentIds
    model: Name | None = None
    mode: Name | None = None
    title: Annotated[str, Meta(max_length=1024)] | None = None


@dataclass
class QuestionIn:
    question: str  # its size is checked before it is tokenized (SessionService.prepare)
    thinking: bool | None = None
    max_tokens: MaxTokens | None = None
    sampling: SamplingIn = field(default_factory=SamplingIn)
    history: bool = True  # false: answer without the session's earlier turns
    # true: go on with the session's last answer where it stopped (cut at its token limit); `question`
    # may then be empty: that answer is put back into its own assistant turn and the model writes on
    continue_answer: bool = False


def message_out(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "role": m.role, "content": m.content, "created_at": iso_utc(m.created_at)}
    if m.role == "user":
        out["continues"] = bool((m.extra or {}).get("continues"))
    if m.role == "assistant":
        out.update(thinking=m.thinking or "", citations=m.citations, mode=m.mode, timings=m.timings,
                   **Answer.from_record(m.extra or {}).extra())  # the answer's record, as it was answered
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

    @post("/plan", status_code=200, summary="The budget manager's plan, allocating nothing", opt={COSTLY: True},
          request_max_body_size=JSON_BODY_LIMIT)
    async def plan(self, request: Request, sessions: NamedDependency[SessionService],
                   principal: NamedDependency[str], data: JSONBody[PlanIn]) -> Response[dict[str, Any]]:
        """The plan; its `Server-Timing` header says how long it took and whether the token counts were
        computed now or came from the count cache."""

        def timed(_cancel: threading.Event) -> tuple[dict[str, Any], str]:
            started = time.perf_counter()
            sessions.engine.counts.tally(reset=True)
            plan = sessions.plan_view(data.document_ids, data.model, data.mode, principal=principal)
            cached, computed = sessions.engine.counts.tally()
            source = "tokenized" if computed else "cached" if cached else "none"
            return plan, f'plan;dur={(time.perf_counter() - started) * 1000:.1f};desc="counts {source}"'

        plan, timing = await run_costly(request, timed)
        return Response(plan, headers={"Server-Timing": timing})

    @post("/read-ahead", status_code=202, summary="Read documents in the background before they are asked about",
          opt={COSTLY: True}, request_max_body_size=JSON_BODY_LIMIT)
    async def read_ahead(self, request: Request, sessions: NamedDependency[SessionService],
                         principal: NamedDependency[str], data: JSONBody[PlanIn],
                         replace: bool = False) -> dict[str, Any]:
        """Start reading the documents' prompt prefix at the lowest priority (whole mode: the documents;
        chunked: the first chunks), so the first question on them starts warm. 202 with the read-ahead's
        state (queued, reading, yielded, done, stopped, failed; `off` when DOCQA_READ_AHEAD=false) and
        `tokens_done` / `tokens_total` / `tokens_limit`; GET /api/read-ahead or /api/health follow it.
        `?replace=true`: this set replaces the caller's other read-aheads not done yet (they are stopped),
        as the page does when the ticked documents change."""

        def start(_cancel: threading.Event) -> dict[str, Any]:
            spec, plan = sessions.plan(data.document_ids, data.model, data.mode, principal=principal)
            if replace:
                sessions.reading.drop(principal, keep=(spec.name, list(data.document_ids), plan.mode))
            return sessions.read_ahead(spec, plan, data.document_ids, principal)

        return await run_costly(request, start)

    @delete("/read-ahead", status_code=200, sync_to_thread=True,
            summary="Stop the caller's read-aheads that are not done (the documents are no longer chosen)")
    def drop_read_ahead(self, sessions: NamedDependency[SessionService],
                        principal: NamedDependency[str]) -> dict[str, int]:
        """What was read so far stays on disk; `dropped` says how many sets were stopped."""
        return {"dropped": sessions.reading.drop(principal)}

    @get("/read-ahead", sync_to_thread=True, summary="The caller's read-aheads and how far each has got")
    def read_ahead_status(self, sessions: NamedDependency[SessionService],
                          principal: NamedDependency[str]) -> dict[str, Any]:
        return sessions.reading.status(principal)

    @post("/sessions", status_code=201, summary="Open a question session over documents", opt={COSTLY: True},
          request_max_body_size=JSON_BODY_LIMIT)
    async def create(self, request: Request, sessions: NamedDependency[SessionService],
                     principal: NamedDependency[str], data: JSONBody[SessionIn]) -> dict[str, Any]:
        session = await run_costly(request, lambda cancel: sessions.create(
            data.document_ids, data.model, data.mode, data.title, principal=principal, cancel=cancel))
        return session_out(session)

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
          opt={RATE: "questions", COSTLY: True}, request_max_body_size=JSON_BODY_LIMIT)
    async def ask(self, request: Request, sessions: NamedDependency[SessionService], principal: NamedDependency[str],
                  session_id: FromPath[str], data: JSONBody[QuestionIn]) -> Response[dict[str, Any]] | ServerSentEvent:
        opts = AskOptions(thinking=data.thinking, max_tokens=data.max_tokens, sampling=data.sampling.to_dict(),
                          history=data.history or data.continue_answer)
        question_text = CONTINUE_QUESTION if data.continue_answer else data.question
        # Every refusal (404, 409, 422, and 503 when the model's queue is full) is answered as JSON here,
        # before a stream could start; an accepted question holds its place in the queue to the end.
        # The session and its documents are looked up as the principal's own (404 otherwise); the answer
        # below works only from `accepted`, so no other principal's text can reach the model.
        accepted = await run_on_lane(request, sessions.prepare, session_id, question_text, opts, principal,
                                     data.continue_answer)
        streamed = "text/event-stream" in request.headers.get("accept", "")
        question = _Question(request, sessions, accepted, opts, streamed)
        if streamed:
            return ServerSentEvent(question.events())
        try:
            answer, error = await asyncio.shield(question.finished)
        except asyncio.CancelledError:
            question.cancel.set()
            raise
        if error is not None:
            raise error
        assert answer is not None
        return Response(answer.to_dict())


class _Question:
    """An accepted question, answered on its own thread from the moment it is accepted.

    Its own thread, not the loop's shared executor: that pool is small and queues silently. Started
    at once, so the place the question holds in the model's queue is always released by that thread,
    even when a stream is never read. A client that goes away cancels it, whenever it goes: the
    connection itself is watched, since a stream abandoned before its first event is never iterated
    (so its generator's cleanup never runs), and a plain JSON request is not cancelled by the server."""

    def __init__(self, request: Request, sessions: SessionService, accepted: Accepted, opts: AskOptions,
                 streamed: bool) -> None:
        self.loop = asyncio.get_running_loop()
        self.cancel = threading.Event()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] | None = asyncio.Queue() if streamed else None
        self.finished: asyncio.Future[tuple[Answer | None, BaseException | None]] = self.loop.create_future()
        self.watch = asyncio.ensure_future(self._until_disconnected(request))
        self.finished.add_done_callback(lambda _: self.watch.cancel())
        threading.Thread(target=self._work, args=(sessions, accepted, opts), name="docqa-question",
                         daemon=True).start()

    async def _until_disconnected(self, request: Request) -> None:
        # The body has been read: the next ASGI message is the client's disconnect (or the end of the
        # response). Under uvicorn (what `docqa serve` runs) a disconnect is a state every receive()
        # reports, so Litestar's own listener for a streamed response sees it too.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self.cancel.set()

    def _on_loop(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is shutting down
            self.loop.call_soon_threadsafe(fn, *args)

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        if self.queue is not None:
            self._on_loop(self.queue.put_nowait, (kind, payload))

    def _work(self, sessions: SessionService, accepted: Accepted, opts: AskOptions) -> None:
        answer: Answer | None = None
        error: BaseException | None = None
        try:
            # Where the question stands in the model's queue when it is accepted (it holds its place):
            # the page shows "n ahead" until reading starts, and refreshes it from /api/health.
            status = sessions.engine.model_health(accepted.spec)  # any backend: local runner or remote servers
            self._emit("queue", {"ahead": max(int(status["queue_depth"]) - 1, 0),
                                 "queue_size": status["queue_size"], "avg_job_s": status.get("avg_job_s")})
            answer = sessions.ask(accepted.session_id, accepted.question, opts, accepted.principal,
                                  on_event=self._emit if self.queue is not None else None, cancel=self.cancel,
                                  accepted=accepted)
            self._emit("done", answer.to_dict())
        except DocqaError as exc:
            error = exc
            self._emit("error", {"status_code": exc.status_code, "detail": exc.detail})
        except Exception as exc:  # noqa: BLE001 - reported to the client
            if self.queue is not None:  # a JSON request re-raises it in the handler, where Litestar logs it
                log.exception("question %s failed", accepted.session_id)
            error = exc
            self._emit("error", {"status_code": 500,
                                 "detail": "Something went wrong inside docqa; nothing was stored."})
        finally:
            with accepted.prepared.ticket:  # given back here if the answer never started (normally by `ask`)
                pass
            if self.queue is not None:
                self._on_loop(self.queue.put_nowait, None)
            self._on_loop(_resolve, self.finished, (answer, error))

    async def events(self) -> AsyncIterator[ServerSentEventMessage]:
        assert self.queue is not None
        try:
            while (item := await self.queue.get()) is not None:
                kind, payload = item
                yield ServerSentEventMessage(event=kind, data=json.dumps(payload, ensure_ascii=False))
        finally:
            self.cancel.set()
            await asyncio.shield(self.finished)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


@get("/api/models", sync_to_thread=True, tags=["models"], summary="Models with context and KV bytes per token")
def list_models(registry: NamedDependency[ModelRegistry], state: State) -> list[dict[str, Any]]:
    """Names, sizes and contexts; never where a model's file lives (`docqa models` shows that to the operator).
    Models pulled or put in the tools' folders since the server started are looked for first (every 5 s at
    most; engine/discovery.py)."""
    from docqa.engine.discovery import rescan

    rescan(registry, state.settings)
    return [public_model(spec.describe(), registry) for spec in registry.list()]


def public_model(described: dict[str, Any], registry: ModelRegistry) -> dict[str, Any]:
    out = {k: v for k, v in described.items() if k != "path"}
    out["embedded"] = Path(str(described.get("path", ""))).name == SMOLLM2.filename  # the small demo model
    if out.get("error"):
        out["error"] = without_paths(str(out["error"]), registry)
    return out


def without_paths(text: str, registry: ModelRegistry) -> str:
    """A sentence about a model with each model file's path replaced by its file name."""
    for spec in sorted(registry.list(), key=lambda s: -len(str(s.path))):
        text = text.replace(str(spec.path), spec.path.name)
    return text
