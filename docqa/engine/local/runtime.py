"""A model's queue and its runner process, as the web process sees them.

The model itself runs in a runner process (runner.py) that owns llama.cpp; a `Runtime` starts it,
sends it one job at a time from a single worker thread and reads back progress, tokens and the
result. The queue in front of it is bounded and counts questions, not jobs: a question takes a
`Ticket` (backend.py) when it is accepted and holds it until it ends, however many jobs it runs (a chunked answer
runs one per chunk, then the reduce step). One question runs and at most `queue_size` wait; past
that a new one is refused at once (503 with a Retry-After estimated from how long recent jobs
took), and a question once accepted is never refused halfway. `status()` says what the model and
its runner are doing, for /api/health.

When the runner dies (SIGSEGV in a kernel, SIGBUS from a truncated model file, SIGKILL from the OOM
killer or a person), the question it was answering ends with `ModelCrashed`, naming the signal and
what the runner was doing; nothing else in docqa is touched, and the next question starts a fresh
runner (which finds the documents' snapshot on disk, if one was written). A runner that dies
`crash_limit` times within `crash_window_s` is marked failed: questions get `ModelFailed` at once,
without starting it again, until the model file changes or docqa restarts. A runner idle for
`keep_alive_s` is stopped to free its memory (`unloaded`); the next question loads it again.

Priorities: the model's work comes in three classes, served in this order: `interactive` (a
person's question), `batch` (a batch item), `read_ahead` (reading a document set before it is asked
about, readahead.py). Within a class, principals take turns (round robin), so one principal's batch
cannot starve another's; and when work of another principal arrives in the class of the running job,
that job yields too (below) and goes after it, so one principal's long reading holds another's short
question for one slice, not for the whole reading (issue 29: 900 s and more before this; once per
job, so that two principals' batch items do not take the model from each other at every item).
When higher-class work arrives while lower-class work runs, the runner is asked to yield: the lower
job stops at its next prefill slice or generated token, keeps what it read (a partial snapshot,
runner.py) and goes back to the head of its class; it resumes from there once
the higher work is done. An interactive question so waits for at most one slice or token of a batch
item or a read-ahead, never for a whole one. The queue bound counts interactive and batch places
(read-ahead never takes one): a question is refused only when the places of its own class and those
above it are full, and its Retry-After counts only those.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import psutil

from docqa.engine.backend import CLASSES, Generation, Ticket
from docqa.engine.local import cpu, runner
from docqa.engine.local.cpu import default_threads
from docqa.engine.local.state_cache import StateCache
from docqa.engine.local.work import Sampling, Work, runner_error
from docqa.errors import Cancelled, ContextAllocationFailed, DocqaError, ModelCrashed, ModelFailed, QueueFull

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
TokenSink = Callable[[str, str], None]  # (kind: "thinking" | "token", text)
PHASES = {
    "starting": "while starting", "loading": "while loading the model", "reading": "while reading the documents",
    "writing": "while writing the answer", "saving": "while saving the documents' state", "idle": "while idle",
}
NATIVE_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGABRT, signal.SIGFPE}

__all__ = ["CLASSES", "Cancelled", "ContextAllocationFailed", "Generation", "Job", "QueueFull", "Runtime",
           "Sampling", "default_threads"]

# Prefill slice of the classes that yield (tokens): a question waits for at most one such slice. Smaller
# than the usual n_batch (512), whose slice takes 2 s at 250 tokens/s and over 10 s on a loaded 2-core
# machine (bench/results/priority.json); the cost is a somewhat slower read of lower-class work.
YIELD_SLICE = 128
STOP_GRACE_S = 15.0  # a stopping runner's time to end its current job, on top of DOCQA_SNAPSHOT_STOP_WAIT
RANK = {"system": -1, **{c: i for i, c in enumerate(CLASSES)}}  # system: the runtime's own short steps


class ModelFile(Protocol):
    """What the runtime needs of a local model (local.ModelSpec): its file, and whether it is still the
    file described at start."""

    name: str

    @property
    def path(self) -> Path: ...

    def file_problem(self) -> str | None: ...

    def require(self) -> object: ...


@dataclass
class Job(Work):
    """A `Work` with what stays in the web process: where its progress and tokens go, and its cancel flag."""

    on_progress: Progress | None = None
    on_token: TokenSink | None = None
    on_yield: Callable[[], None] | None = None  # it gave the model to higher-priority work (it resumes)
    cancel: threading.Event = field(default_factory=threading.Event)
    yielded: list[dict[str, Any]] = field(default_factory=list)  # where each yield left it (runner info)
    started: float = 0.0  # perf_counter when the worker thread first took it (its queue time ends)

    def work(self) -> Work:
        """What crosses the pipe (the callbacks and the event do not)."""
        values = {f.name: getattr(self, f.name) for f in fields(Work)}
        return Work(**{**values, "stream": self.on_token is not None, "progress": self.on_progress is not None})


class RunnerDied(Exception):
    pass


class _Requeue(Exception):
    """A job yielded to higher-priority work: its task goes back to the head of its class."""


@dataclass
class _Task:
    rank: int
    principal: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any]
    gave_way: bool = False  # it has yielded once to another principal's work of its class (never twice)


class RunnerProcess:
    """One runner process (`python -m docqa.engine.local.runner`, a clean interpreter: no threads, sockets or
    memory of the server) and the two pipes to it. Not multiprocessing's spawn: that re-imports the
    parent's __main__ module, which breaks scripts that embed docqa without a main guard."""

    def __init__(self, params: runner.HostParams) -> None:
        self._from_runner, child_out = multiprocessing.Pipe(duplex=False)
        child_in, self._to_runner = multiprocessing.Pipe(duplex=False)
        env = dict(os.environ)
        root = str(Path(runner.__file__).resolve().parents[2])  # where the docqa package is imported from
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        fds = (child_in.fileno(), child_out.fileno())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docqa.engine.local.runner", *map(str, fds)], pass_fds=fds, env=env,
            stdin=subprocess.DEVNULL, start_new_session=False,
        )
        child_in.close()
        child_out.close()
        self.info: dict[str, Any] = {}
        self.killed_on_stop = False
        self.send(("params", params))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def hello(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.recv(0.2)
            if message is not None and message[0] == "hello":
                self.info = message[1]
                return self.info
            if message is not None and message[0] == "log":
                logging.getLogger(message[2]).log(message[1], "%s", message[3])
        self.kill()
        raise RunnerDied("the model process did not start in time")

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self._to_runner.send(message)
        except (BrokenPipeError, OSError) as exc:
            raise RunnerDied(str(exc)) from exc

    def recv(self, timeout_s: float) -> tuple[Any, ...] | None:
        try:
            if self._from_runner.poll(timeout_s):
                return self._from_runner.recv()
        except (EOFError, OSError) as exc:
            raise RunnerDied(str(exc)) from exc
        if not self.alive():
            raise RunnerDied("the model process is gone")
        return None

    def _wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def exit_description(self) -> str:
        """'SIGSEGV', 'SIGKILL', 'exit status 3'… once the process has ended (it is killed if it has not)."""
        code = self._wait(2)
        if code is None:
            self.kill()
            code = self.proc.returncode
        if code is None:
            return "an unknown cause"
        if code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """Ask the runner to end after its current job and the snapshots it is still writing; kill it if it
        has not within `timeout_s`. Returns its report of those snapshots (runner.SnapshotWriter.finish),
        None when it gave none (killed, or already gone). Its log lines are read meanwhile."""
        report: dict[str, Any] | None = None
        with contextlib.suppress(BrokenPipeError, OSError):
            self._to_runner.send(("stop",))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message = self.recv(min(0.5, max(0.0, deadline - time.monotonic())))
            except RunnerDied:
                break
            if message is None:
                continue
            if message[0] == "log":
                logging.getLogger(message[2]).log(message[1], "%s", message[3])
            elif message[0] == "stopped":
                report = message[1]
        self.killed_on_stop = self._wait(max(0.0, deadline - time.monotonic())) is None
        if self.killed_on_stop:
            self.kill()
        self._close()
        return report

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self._wait(5)
        self._close()

    def _close(self) -> None:
        for conn in (self._to_runner, self._from_runner):
            with contextlib.suppress(OSError):
                conn.close()


class Runtime:
    def __init__(self, spec: ModelFile, state_dir: Path, state_cache_bytes: int, *, queue_size: int,
                 n_threads: int | None, use_mmap: bool = True, extra_buffers: str = "auto",
                 keep_alive_s: float = 300.0, crash_limit: int = 3, crash_window_s: float = 60.0,
                 start_timeout_s: float = 120.0, snapshot_stop_wait_s: float = 60.0) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.state_cache_bytes = state_cache_bytes
        self.queue_size = queue_size
        self.n_threads = n_threads
        self.use_mmap = use_mmap
        self.keep_alive_s = keep_alive_s
        self.crash_limit = crash_limit
        self.crash_window_s = crash_window_s
        self.start_timeout_s = start_timeout_s
        self.snapshot_stop_wait_s = snapshot_stop_wait_s
        self.last_stop: dict[str, Any] | None = None  # the runner's report when it last stopped (its snapshots)
        self.extra_buffers, self.extra_buffers_reason = cpu.use_extra_buffers(extra_buffers)
        self._auto_buffers = extra_buffers == "auto"
        self.fault: str | None = None  # tests only: passed to the runner (see runner.HostParams.fault)
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)
        # tasks per rank, per principal (round robin: the next principal is the first key)
        self._queues: dict[int, collections.OrderedDict[str, collections.deque[_Task]]] = {
            rank: collections.OrderedDict() for rank in RANK.values()}
        self._current: _Task | None = None
        self._yield = threading.Event()  # higher-priority work waits: the running job is asked to yield
        self._places = dict.fromkeys(CLASSES, 0)  # places held per class
        self._yields = 0
        self._worker = threading.Thread(target=self._serve, daemon=True, name=f"model-{spec.name}")
        self._job_s = 0.0  # moving average of how long a job holds the model, for Retry-After
        self._jobs_done = 0
        self._ids = itertools.count(1)
        self._idle_upto = 0  # the last job whose end (its snapshot written) the runner has reported
        self._runner: RunnerProcess | None = None
        self._state = "unloaded"
        self._phase = "idle"
        self._starts = 0
        self._restarts = 0
        self._crashes: collections.deque[float] = collections.deque()
        self._last_exit: str | None = None
        self._failed: str | None = None
        self._failed_file: tuple[int, int, int] | None = None
        self._last_used = time.monotonic()
        self._closed = threading.Event()
        self._worker.start()
        if keep_alive_s > 0:
            threading.Thread(target=self._keep_alive, daemon=True, name=f"keep-alive-{spec.name}").start()

    # -- the queue ----------------------------------------------------------------------------------

    @property
    def _pending(self) -> int:
        """Places counted against the queue bound: interactive questions and batch items."""
        return self._places["interactive"] + self._places["batch"]

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = self._pending
            places = dict(self._places)
            current = self._current
            queued = {c: sum(len(d) for d in self._queues[RANK[c]].values()) for c in CLASSES}
        # The oldest place is the question being answered, also in the moment between two of its jobs.
        running, waiting = min(pending, 1), max(pending - 1, 0)
        now = next((c for c in CLASSES if current is not None and RANK[c] == current.rank), None)
        return {
            "state": "busy" if pending else "idle", "running": running, "waiting": waiting,
            "queue_depth": pending, "queue_size": self.queue_size, "loaded": self.loaded,
            "avg_job_s": round(self._job_s, 3) if self._jobs_done else None,
            # per priority class: places held (questions, batch items, read-aheads) and jobs queued now
            "classes": {c: {"places": places[c], "queued_jobs": queued[c]} for c in CLASSES},
            "running_class": now, "yields": self._yields,
            "runner": self.runner_status(),
        }

    @property
    def loaded(self) -> bool:
        r = self._runner
        return r is not None and r.alive()

    def runner_status(self) -> dict[str, Any]:
        """starting | ready | restarting (it died; the next question starts it) | failed | unloaded."""
        r = self._runner
        state = self._state
        writes = StateCache(self.state_dir, 0).pending_writes()
        if state == "ready" and (r is None or not r.alive()):
            state = "restarting"
        return {
            "state": state, "pid": r.pid if r is not None and r.alive() else None, "restarts": self._restarts,
            "starts": self._starts,
            "phase": self._phase if state == "ready" else None,
            "last_exit": self._last_exit, "failed": self._failed, "extra_buffers": self.extra_buffers,
            "extra_buffers_reason": self.extra_buffers_reason, "keep_alive_s": self.keep_alive_s,
            "resident_bytes": self.resident_bytes(),
            "snapshots_writing": writes["pending"],
            # snapshots copied from a context and not yet on disk: count, tokens, bytes, oldest_s
            "snapshot_writes": writes,
            "system_info": (r.info.get("system_info") if r is not None else None) or cpu.system_info(),
        }

    def resident_bytes(self) -> int:
        """Private memory of the runner (its weights copy or touched pages, context, KV): what stopping
        it would give back. 0 when none runs."""
        r = self._runner
        if r is None or r.pid is None or not r.alive():
            return 0
        try:
            return int(psutil.Process(r.pid).memory_full_info().uss)
        except (psutil.Error, OSError):
            return 0

    def _retry_after(self, pending: int) -> int:
        """Seconds until a slot is likely free: about one average job (the running one ends, a waiting one starts)."""
        if not self._jobs_done:
            return 10
        return max(1, min(300, math.ceil(self._job_s * pending / max(1, self.queue_size))))

    def ahead(self, klass: str) -> int:
        """Places that come before a new one of `klass`: those of its class and of the classes above it
        (lower classes yield to it and do not count)."""
        with self._lock:
            return sum(self._places[c] for c in CLASSES[: RANK[klass] + 1])

    def reserve(self, klass: str = "interactive", principal: str = "") -> Ticket:
        """Take a place in the queue for one question (or batch item, or read-ahead) of `klass`, or
        refuse now (QueueFull, ModelFailed). Read-ahead places are never refused nor counted in the bound."""
        if klass not in CLASSES:
            raise ValueError(f"unknown priority class {klass!r}")
        self._refuse_if_failed()
        with self._lock:
            if klass != "read_ahead":
                self._refuse_if_full(klass)
            self._places[klass] += 1
        return Ticket(klass, principal, lambda: self._release(klass))

    def _refuse_if_full(self, klass: str = "interactive") -> None:
        ahead = self.ahead(klass)
        if ahead >= self.queue_size + 1:
            waiting = ahead - 1
            retry = self._retry_after(ahead)
            what = "one question is being answered" if klass == "interactive" else \
                "one question or batch item is being answered"
            raise QueueFull(
                f"The model {self.spec.name!r} is busy: {what} and {waiting} "
                f"{'is' if waiting == 1 else 'are'} waiting, as many as DOCQA_QUEUE_SIZE allows; "
                f"try again in about {retry} seconds.",
                retry_after=retry, running=1, waiting=waiting, queue_size=self.queue_size, priority=klass,
            )

    def _refuse_if_failed(self) -> None:
        with self._lock:
            if self._failed is None:
                return
            if self._failed_file is not None and _file_state(self.spec.path) != self._failed_file:
                log.info("model %s: its file changed; it may be started again", self.spec.name)
                self._failed, self._failed_file, self._state = None, None, "unloaded"
                self._crashes.clear()
                return
            raise ModelFailed(self._failed)

    def run(self, job: Job, ticket: Ticket) -> Future[Generation]:
        """Queue `job` for the runner under the question's `ticket` (in its class and turn, never counted
        again nor refused); the future ends with the job's `Generation`."""
        return self.submit(self._job, job, ticket=ticket)

    def _job(self, job: Job) -> Generation:
        job.started = job.started or time.perf_counter()
        return self._run(job)

    def submit(self, fn: Callable[..., Any], *args: Any, ticket: Ticket) -> Future[Any]:
        """Run `fn` on the worker thread, in its ticket's class and turn. Under a question's `ticket` it is
        not counted again (and never refused)."""
        if ticket.klass == "read_ahead":  # its time (and its yields) must not skew Retry-After
            return self._enqueue(RANK[ticket.klass], ticket.principal, fn, args)
        return self._enqueue(RANK[ticket.klass], ticket.principal, self._timed, (fn, *args))

    def _enqueue(self, rank: int, principal: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._work:
            if self._closed.is_set():
                raise RuntimeError("the model's queue is closed")
            task = _Task(rank, principal, fn, args, future)
            self._queues[rank].setdefault(principal, collections.deque()).append(task)
            current = self._current
            if current is not None and rank >= 0 and (
                    current.rank > rank
                    or (current.rank == rank and current.principal != principal and not current.gave_way)):
                # the running job gives way at its next slice or token: to higher-class work, or, within
                # its class, to another principal's (one reading never holds the others for its whole length);
                # that once per job, or two principals' batch items would take the model from each other
                # at every item
                self._yield.set()
            self._work.notify()
        return future

    def withdraw(self, future: Future[Any]) -> bool:
        """Take a task that has not started out of the queue and cancel its future (its done-callbacks run
        now, so whatever it held is given back at once). False when it has started or ended."""
        with self._work:
            for by_principal in self._queues.values():
                for principal, tasks in list(by_principal.items()):
                    for task in tasks:
                        if task.future is future and future.cancel():
                            tasks.remove(task)
                            if not tasks:
                                del by_principal[principal]
                            return True
        return False

    def _next(self) -> _Task | None:
        """The next task: the highest class first; within it, the principal whose turn it is."""
        for rank in sorted(self._queues):
            by_principal = self._queues[rank]
            if not by_principal:
                continue
            principal, tasks = next(iter(by_principal.items()))
            task = tasks.popleft()
            if tasks:
                by_principal.move_to_end(principal)  # the others' turn next
            else:
                del by_principal[principal]
            return task
        return None

    def _serve(self) -> None:
        """The worker thread: runs one task at a time, in priority order."""
        while True:
            with self._work:
                while (task := self._next()) is None:
                    if self._closed.is_set():
                        return
                    self._work.wait(0.5)
                self._current = task
                self._yield.clear()
                if any(self._queues[r] for r in self._queues if 0 <= r < task.rank):
                    self._yield.set()
            if not task.future.running() and not task.future.set_running_or_notify_cancel():
                with self._work:
                    self._current = None
                continue
            try:
                result = task.fn(*task.args)
            except _Requeue:
                with self._work:
                    self._yields += 1
                    by_principal = self._queues[task.rank]
                    # others of its class waiting: it gave way to them, so it goes after them (round robin);
                    # else it gave way to higher-class work only and keeps the head of its class
                    others = any(p != task.principal for p in by_principal)
                    by_principal.setdefault(task.principal, collections.deque()).appendleft(
                        _Task(task.rank, task.principal, task.fn, task.args, task.future, task.gave_way or others))
                    by_principal.move_to_end(task.principal, last=others)
                    self._current = None
                continue
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            with self._work:
                self._current = None

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - t0
            with self._lock:
                self._jobs_done += 1
                self._job_s = elapsed if self._jobs_done == 1 else 0.7 * self._job_s + 0.3 * elapsed
                self._last_used = time.monotonic()

    def _release(self, klass: str = "interactive") -> None:  # by its Ticket's `with` block only
        with self._lock:
            self._places[klass] -= 1
            self._last_used = time.monotonic()

    def preload(self) -> None:
        """Start the runner now, ahead of any question (as llama-server loads its model at start), so the
        first question does not wait for the model to load; keep-alive counts from here. A model that
        cannot load says so in `status` (failed, and why), as a question would have found."""
        self._system(self._preload)

    def _preload(self) -> None:
        if self._failed or self._closed.is_set():
            return
        try:
            self._ensure_runner()
        except DocqaError as exc:
            log.warning("model %s: could not preload: %s", self.spec.name, exc.detail)
        with self._lock:
            self._last_used = time.monotonic()

    def _system(self, fn: Callable[..., Any], *args: Any) -> None:
        """The runtime's own short steps (following a snapshot, unloading), ahead of every class."""
        with contextlib.suppress(RuntimeError):  # shut down meanwhile
            self._enqueue(RANK["system"], "", fn, args)

    def close(self) -> None:
        with self._work:
            self._closed.set()
            for by_principal in self._queues.values():  # what has not started is cancelled
                for tasks in by_principal.values():
                    for t in tasks:
                        t.future.cancel()
                by_principal.clear()
            self._work.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join()
        self._stop_runner("unloaded")

    # -- the runner (everything below runs on the worker thread only) -------------------------------

    def _run(self, job: Job) -> Generation:
        self._refuse_if_failed()
        # Checked for every job: a model file truncated or replaced since start must not reach llama.cpp.
        if self._runner is not None and self.spec.file_problem():
            self._stop_runner("unloaded")
        self.spec.require()
        r = self._ensure_runner()
        job_id = next(self._ids)
        cancel_sent = yield_sent = False
        try:
            r.send(("job", job_id, job.work()))
            while True:
                if (job.cancel.is_set() or self._closed.is_set()) and not cancel_sent:  # closing: end it too
                    r.send(("cancel", job_id))
                    cancel_sent = True
                if self._yield.is_set() and not yield_sent and not cancel_sent:
                    r.send(("yield", job_id))
                    yield_sent = True
                message = r.recv(0.05 if not yield_sent else 0.02)
                if message is None:
                    continue
                kind = message[0]
                if kind == "log":
                    logging.getLogger(message[2]).log(message[1], "%s", message[3])
                elif kind == "phase":
                    self._phase = message[2]
                elif kind == "idle":
                    self._phase, self._idle_upto = "idle", max(self._idle_upto, message[1])
                elif message[1] != job_id:
                    continue  # the end of an earlier job, read only now
                elif kind == "progress" and job.on_progress:
                    job.on_progress(message[2])
                elif kind == "token" and job.on_token:
                    job.on_token(message[2], message[3])
                elif kind == "done":
                    self._after(r, job_id)
                    return _merged(job, Generation(**message[2]))
                elif kind == "yielded":
                    self._after(r, job_id)
                    job.yielded.append(message[2])
                    job.resume = list(message[2].get("generated") or [])
                    if job.on_yield is not None:
                        job.on_yield()
                    raise _Requeue
                elif kind == "error":
                    self._after(r, job_id)
                    raise runner_error(message[2], message[3], message[4])
        except RunnerDied:
            raise self._crashed(r) from None

    def _after(self, r: RunnerProcess, job_id: int) -> None:
        """Once a job has answered, the runner writes the documents' snapshot (runner.py): follow it on the
        worker thread, before the next job, so its log lines and phase (`saving`) show while it happens."""
        self._system(self._drain, r, job_id)

    def _drain(self, r: RunnerProcess, job_id: int) -> None:
        if r is not self._runner:
            return
        try:
            # Jobs run in order: once any job's end has been read (here, or by a later job's loop that ran
            # first), this one's snapshot is written.
            while not self._closed.is_set() and self._idle_upto < job_id:
                message = r.recv(0.5)
                if message is None:
                    continue
                if message[0] == "log":
                    logging.getLogger(message[2]).log(message[1], "%s", message[3])
                elif message[0] == "phase":
                    self._phase = message[2]
                elif message[0] == "idle":
                    self._phase, self._idle_upto = "idle", max(self._idle_upto, message[1])
        except RunnerDied:
            self._record_crash(r, self._phase)

    def _ensure_runner(self) -> RunnerProcess:
        r = self._runner
        if r is not None and r.alive():
            return r
        if r is not None:  # it died between two questions (killed, OOM): not this question's doing
            self._record_crash(r, "idle")
        params = runner.HostParams(
            model_path=str(self.spec.path), model_name=self.spec.name, use_mmap=self.use_mmap,
            n_threads=self.n_threads or default_threads(), n_threads_batch=self.n_threads or os.cpu_count() or 1,
            extra_buffers=self.extra_buffers, state_dir=str(self.state_dir), state_cache_bytes=self.state_cache_bytes,
            parent_pid=os.getpid(), fault=self.fault, snapshot_stop_wait_s=self.snapshot_stop_wait_s,
        )
        self._state = "restarting" if self._crashes or self._restarts else "starting"
        self._phase = "starting"
        r = RunnerProcess(params)
        self._runner = r
        try:
            r.hello(self.start_timeout_s)
        except RunnerDied:
            raise self._crashed(r) from None
        self._starts += 1
        if self._state == "restarting":
            self._restarts += 1
        self._state, self._phase = "ready", "idle"
        log.info("model %s: runner %d ready (extra buffers %s)", self.spec.name, r.pid,
                 "on" if self.extra_buffers else "off")
        return r

    def _crashed(self, r: RunnerProcess) -> ModelCrashed | ModelFailed:
        during = PHASES.get(self._phase, "while answering")
        how = self._record_crash(r, self._phase)
        if self._failed:
            return ModelFailed(self._failed)
        return ModelCrashed(
            f"The model process ended with {how} {during}; nothing was stored. "
            "Ask again: the next question starts it afresh.", retry_after=1,
        )

    def _record_crash(self, r: RunnerProcess, phase: str) -> str:
        how = r.exit_description()
        r.kill()
        self._runner = None
        self._state, self._phase = "restarting", "idle"
        self._last_exit = f"{how} {PHASES.get(phase, 'while answering')}"
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.crash_window_s:
            self._crashes.popleft()
        log.error("model %s: its runner ended with %s", self.spec.name, self._last_exit)
        native = any(how == s.name for s in NATIVE_FAULTS)
        if self._auto_buffers and self.extra_buffers and native and phase in ("loading", "reading", "writing"):
            self.extra_buffers = False
            self.extra_buffers_reason = (f"turned off after the runner ended with {how} {PHASES[phase]} "
                                         "using llama.cpp's extra buffer types")
            log.warning("model %s: extra buffer types %s", self.spec.name, self.extra_buffers_reason)
        if len(self._crashes) >= self.crash_limit:
            with self._lock:
                self._state = "failed"
                self._failed_file = _file_state(self.spec.path)
                self._failed = (
                    f"The model {self.spec.name!r} is stopped: its process ended {len(self._crashes)} times within "
                    f"{self.crash_window_s:g} seconds (last: {self._last_exit}). docqa will not start it again "
                    "until its model file changes or docqa restarts."
                )
            log.error("model %s: %s", self.spec.name, self._failed)
        return how

    def _stop_runner(self, state: str) -> None:
        r, self._runner = self._runner, None
        if r is not None:
            self._phase = "saving"
            # the runner's own wait for its snapshots, and time for the job it may still be ending
            self.last_stop = r.stop(self.snapshot_stop_wait_s + STOP_GRACE_S)
            self._say_stopped(r, self.last_stop)
        if self._state != "failed":
            self._state = state
        self._phase = "idle"

    def _say_stopped(self, r: RunnerProcess, report: dict[str, Any] | None) -> None:
        """Log what a stopping runner did with the snapshots it had not yet written (`docqa serve` shows it)."""
        name = self.spec.name
        if report is None:
            if r.killed_on_stop:
                log.warning("model %s: runner %d did not stop in time and was killed; a snapshot it was writing "
                            "is lost (its documents will be read again)", name, r.pid)
            return
        if report["saved"]:
            log.info("model %s: runner %d stopped after writing %d pending KV snapshot(s) (%s tokens, %.1f MB) "
                     "in %.1f s", name, r.pid, report["saved"], f"{report['saved_tokens']:,}",
                     report["saved_bytes"] / 1e6, report["seconds"])
        if report["abandoned"]:
            log.warning("model %s: %d KV snapshot(s) (%s tokens) not written within DOCQA_SNAPSHOT_STOP_WAIT "
                        "(%g s); their documents will be read again", name, report["abandoned"],
                        f"{report['abandoned_tokens']:,}", report["wait_s"])
        if not report["saved"] and not report["abandoned"]:
            log.info("model %s: runner %d stopped; no KV snapshot was pending (all are on disk)", name, r.pid)

    def _keep_alive(self) -> None:
        """Stop the runner once it has been idle for keep_alive_s (on the worker thread, between jobs)."""
        while not self._closed.wait(min(1.0, self.keep_alive_s / 4)):
            with self._lock:
                idle = self._pending == 0 and time.monotonic() - self._last_used >= self.keep_alive_s
            if idle and self.loaded:
                if self._closed.is_set():
                    return
                self._system(self._unload_if_idle)

    def _unload_if_idle(self) -> None:
        with self._lock:
            idle = self._pending == 0 and not self._places["read_ahead"] \
                and time.monotonic() - self._last_used >= self.keep_alive_s
        if idle and self._runner is not None:
            log.info("model %s: idle for %g s, unloading", self.spec.name, self.keep_alive_s)
            self._stop_runner("unloaded")


def _merged(job: Job, gen: Generation) -> Generation:
    """The answer of a job that yielded on the way: where its prefix first came from, the time it read
    over all its runs, what it kept across yields (not read again) and how often it gave way."""
    if not job.yielded:
        return gen
    first = job.yielded[0]
    kept = max(int(y.get("tokens_done", 0)) for y in job.yielded)
    gen.resumed_tokens = max(0, min(kept, gen.cached_tokens) - int(first.get("cached_tokens", 0)))
    gen.prefix_source = str(first.get("prefix_source") or gen.prefix_source)
    gen.cached_tokens = int(first.get("cached_tokens", gen.cached_tokens))
    gen.prefill_s += sum(float(y.get("prefill_s", 0.0)) for y in job.yielded)
    gen.generate_s += sum(float(y.get("generate_s", 0.0)) for y in job.yielded)
    gen.prefill_tokens = max(0, gen.prompt_tokens - gen.cached_tokens)  # read once: the partial kept the rest
    gen.yields = len(job.yielded)
    return gen


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_ino, st.st_mtime_ns
