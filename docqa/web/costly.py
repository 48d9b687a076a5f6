"""Expensive requests: plans, session openings, questions and batch submissions.

Each can tokenize a whole document set. Three rules keep them from taking the service away:
- `CostlyGate`: a principal has at most DOCQA_PRINCIPAL_CONCURRENCY of them in progress (a streamed
  question counts until its stream ends); one more is refused at once with 429 and Retry-After,
  before its body is read;
- `run_costly`: their blocking work runs on a lane of its own, DOCQA_PLANNING_THREADS threads
  (an anyio CapacityLimiter) per principal, never on the shared thread pool that listings and reads
  use, so those never wait behind a plan, and one principal's plans never wait behind another's;
- a client that disconnects while its plan or session is waiting for the lane or being computed
  cancels it: a waiting one never starts, a running one finishes its token count (kept in the
  count cache, docqa/token_counts.py, so it is not wasted) and then creates nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from litestar import Request
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from docqa.errors import ClientGone, RateLimited

COSTLY = "costly"  # route opt: counts against the principal's concurrency
RETRY_AFTER_S = 5
MAX_LANES = 256  # planning lanes kept before idle ones are forgotten
T = TypeVar("T")


class CostlyGate:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_progress: dict[str, int] = {}  # principal → requests in progress (this event loop only)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if scope["type"] != "http" or handler is None or not handler.opt.get(COSTLY):
            await self.app(scope, receive, send)
            return
        principal = str(scope.get("user") or "")
        if self.in_progress.get(principal, 0) >= self.limit:
            raise RateLimited(
                f"You already have {self.limit} plans, sessions, questions or batch submissions in progress "
                f"(DOCQA_PRINCIPAL_CONCURRENCY); wait for one to finish. Try again in {RETRY_AFTER_S} seconds.",
                retry_after=RETRY_AFTER_S, limit=self.limit,
            )
        self.in_progress[principal] = self.in_progress.get(principal, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress[principal] -= 1
            if not self.in_progress[principal]:
                del self.in_progress[principal]


def costly_gate(limit: int) -> DefineMiddleware:
    return DefineMiddleware(CostlyGate, limit=limit)


def lane(request: Request[Any, Any, Any]) -> anyio.CapacityLimiter:
    """The caller's own planning lane: DOCQA_PLANNING_THREADS threads per principal, so one principal's
    plans never wait behind another's (four running plans of one principal took another's from 0.01 s
    to 3-8 s on a shared lane, issue 29). A principal has at most DOCQA_PRINCIPAL_CONCURRENCY costly
    requests in progress, so the threads in use stay bounded by the principals active at once."""
    state = request.app.state
    lanes: dict[str, anyio.CapacityLimiter] | None = getattr(state, "lanes", None)
    if lanes is None:  # created on the event loop, at the first costly request
        lanes = state.lanes = {}
    principal = str(request.scope.get("user") or "")
    found = lanes.get(principal)
    if found is None:
        if len(lanes) >= MAX_LANES:  # forget idle lanes (a lane is only a counter)
            for name in [n for n, lim in lanes.items() if not lim.borrowed_tokens]:
                del lanes[name]
        found = lanes[principal] = anyio.CapacityLimiter(state.settings.planning_threads)
    return found


async def run_on_lane(request: Request[Any, Any, Any], fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the planning lane (no disconnect watch: the caller watches the connection itself)."""
    return await to_thread.run_sync(fn, *args, limiter=lane(request))


async def run_costly(request: Request[Any, Any, Any], fn: Callable[[threading.Event], T]) -> T:
    """`fn(cancel)` on the planning lane; the client disconnecting sets `cancel` (fn creates nothing once it
    is set) and, while fn waits for a thread, never starts it. Raises ClientGone when cancelled."""
    return await run_watched(request, fn, lane(request))


async def run_watched(request: Request[Any, Any, Any], fn: Callable[[threading.Event], T],
                      limiter: anyio.CapacityLimiter | None = None) -> T:
    """`fn(cancel)` in a worker thread (of `limiter`, else the shared pool), with the client's disconnect
    setting `cancel`; call it once the request's body has been read. Raises ClientGone when cancelled."""
    cancel = threading.Event()
    done: list[T] = []
    failed: list[Exception] = []

    async def run() -> None:
        try:
            done.append(await to_thread.run_sync(fn, cancel, limiter=limiter))
        except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
            failed.append(exc)
        finally:
            tg.cancel_scope.cancel()

    async def watch() -> None:
        # The body has been read: the next message is the client's disconnect (or the end of the response).
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        tg.start_soon(watch)
    if failed and not cancel.is_set():
        raise failed[0]
    if not done or cancel.is_set():
        raise ClientGone("The client went away before this was ready; nothing was created.")
    return done[0]
