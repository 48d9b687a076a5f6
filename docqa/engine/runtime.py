"""A model's queue and its runner process, as the web process sees them.

The model itself runs in a runner process (runner.py) that owns llama.cpp; a `Runtime` starts it,
sends it one job at a time from a single worker thread and reads back progress, tokens and the
result. The queue in front of it is bounded and counts questions, not jobs: a question takes a
`Place` when it is accepted and holds it until it ends, however many jobs it runs (a chunked answer
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil

from docqa.engine import cpu, runner
from docqa.engine.models import ModelSpec
from docqa.engine.work import (
    Cancelled,
    ContextAllocationFailed,
    Generation,
    ModelCrashed,
    ModelFailed,
    QueueFull,
    Sampling,
    Work,
    runner_error,
)

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
TokenSink = Callable[[str, str], None]  # (kind: "thinking" | "token", text)
PHASES = {
    "starting": "while starting", "loading": "while loading the model", "reading": "while reading the documents",
    "writing": "while writing the answer", "saving": "while saving the documents' state", "idle": "while idle",
}
NATIVE_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGABRT, signal.SIGFPE}

__all__ = ["Cancelled", "ContextAllocationFailed", "Generation", "Job", "Place", "QueueFull", "Runtime", "Sampling"]


class Place:
    """A question's place in its model's queue, from acceptance to its end (`Runtime.reserve`).

    Released exactly once, by `release()`, by leaving its `with` block, or, as a safety net, when it
    is garbage-collected unreleased (a request dropped between its acceptance and its start)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime: Runtime | None = runtime

    def release(self) -> None:
        rt, self._runtime = self._runtime, None
        if rt is not None:
            rt._release()

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


@dataclass
class Job(Work):
    """A `Work` with what stays in the web process: where its progress and tokens go, and its cancel flag."""

    on_progress: Progress | None = None
    on_token: TokenSink | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def work(self) -> Work:
        """What crosses the pipe (the callbacks and the event do not)."""
        values = {f.name: getattr(self, f.name) for f in fields(Work)}
        return Work(**{**values, "stream": self.on_token is not None, "progress": self.on_progress is not None})


class RunnerDied(Exception):
    pass


class RunnerProcess:
    """One runner process (`python -m docqa.engine.runner`, a clean interpreter: no threads, sockets or
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
            [sys.executable, "-m", "docqa.engine.runner", *map(str, fds)], pass_fds=fds, env=env,
            stdin=subprocess.DEVNULL, start_new_session=False,
        )
        child_in.close()
        child_out.close()
        self.info: dict[str, Any] = {}
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

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the runner to end after its current job (and the snapshot it writes after it); kill it if it
        has not within `timeout_s`."""
        with contextlib.suppress(BrokenPipeError, OSError):
            self._to_runner.send(("stop",))
        if self._wait(timeout_s) is None:
            self.kill()
        self._close()

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
    def __init__(self, spec: ModelSpec, state_dir: Path, state_cache_bytes: int, *, queue_size: int,
                 n_threads: int | None, use_mmap: bool = True, extra_buffers: str = "auto",
                 keep_alive_s: float = 300.0, crash_limit: int = 3, crash_window_s: float = 60.0,
                 start_timeout_s: float = 120.0) -> None:
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
        self.extra_buffers, self.extra_buffers_reason = cpu.use_extra_buffers(extra_buffers)
        self._auto_buffers = extra_buffers == "auto"
        self.fault: str | None = None  # tests only: passed to the runner (see runner.HostParams.fault)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{spec.name}")
        # Re-entrant: an abandoned Place may be collected (and release itself) while this thread holds it.
        self._lock = threading.RLock()
        self._pending = 0  # places held: the question being answered and those waiting
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
        if keep_alive_s > 0:
            threading.Thread(target=self._keep_alive, daemon=True, name=f"keep-alive-{spec.name}").start()

    # -- the queue ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = self._pending
        # The oldest place is the question being answered, also in the moment between two of its jobs.
        running, waiting = min(pending, 1), max(pending - 1, 0)
        return {
            "state": "busy" if pending else "idle", "running": running, "waiting": waiting,
            "queue_depth": pending, "queue_size": self.queue_size, "loaded": self.loaded,
            "avg_job_s": round(self._job_s, 3) if self._jobs_done else None,
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
        if state == "ready" and (r is None or not r.alive()):
            state = "restarting"
        return {
            "state": state, "pid": r.pid if r is not None and r.alive() else None, "restarts": self._restarts,
            "phase": self._phase if state == "ready" else None,
            "last_exit": self._last_exit, "failed": self._failed, "extra_buffers": self.extra_buffers,
            "extra_buffers_reason": self.extra_buffers_reason, "keep_alive_s": self.keep_alive_s,
            "resident_bytes": self.resident_bytes(),
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

    def reserve(self) -> Place:
        """Take a place in the queue for one question, or refuse now (QueueFull, ModelFailed)."""
        self._refuse_if_failed()
        with self._lock:
            self._refuse_if_full()
            self._pending += 1
        return Place(self)

    def _refuse_if_full(self) -> None:
        if self._pending >= self.queue_size + 1:
            waiting = self._pending - 1
            retry = self._retry_after(self._pending)
            raise QueueFull(
                f"The model {self.spec.name!r} is busy: one question is being answered and {waiting} "
                f"{'is' if waiting == 1 else 'are'} waiting, as many as DOCQA_QUEUE_SIZE allows; "
                f"try again in about {retry} seconds.",
                retry_after=retry, running=1, waiting=waiting, queue_size=self.queue_size,
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

    def submit(self, fn: Callable[..., Any], *args: Any, place: Place | None = None) -> Future[Any]:
        """Run `fn` on the worker thread. Under a question's `place` it is not counted again (and never
        refused); without one it takes a place of its own for as long as it runs."""
        if place is not None:
            return self._executor.submit(self._timed, fn, *args)
        own = self.reserve()
        try:
            future = self._executor.submit(self._timed, fn, *args)
        except BaseException:  # shut down meanwhile
            own.release()
            raise
        future.add_done_callback(lambda _: own.release())
        return future

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

    def _release(self) -> None:  # by Place.release only
        with self._lock:
            self._pending -= 1
            self._last_used = time.monotonic()

    def close(self) -> None:
        self._closed.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
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
        cancel_sent = False
        try:
            r.send(("job", job_id, job.work()))
            while True:
                if (job.cancel.is_set() or self._closed.is_set()) and not cancel_sent:  # closing: end it too
                    r.send(("cancel", job_id))
                    cancel_sent = True
                message = r.recv(0.1)
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
                    return Generation(**message[2])
                elif kind == "error":
                    raise runner_error(message[2], message[3], message[4])
        except RunnerDied:
            raise self._crashed(r) from None

    def _after(self, r: RunnerProcess, job_id: int) -> None:
        """Once a job has answered, the runner writes the documents' snapshot (runner.py): follow it on the
        worker thread, before the next job, so its log lines and phase (`saving`) show while it happens."""
        with contextlib.suppress(RuntimeError):  # shut down meanwhile: close() stops the runner
            self._executor.submit(self._drain, r, job_id)

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
            parent_pid=os.getpid(), fault=self.fault,
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
            r.stop()
        if self._state != "failed":
            self._state = state
        self._phase = "idle"

    def _keep_alive(self) -> None:
        """Stop the runner once it has been idle for keep_alive_s (on the worker thread, between jobs)."""
        while not self._closed.wait(min(1.0, self.keep_alive_s / 4)):
            with self._lock:
                idle = self._pending == 0 and time.monotonic() - self._last_used >= self.keep_alive_s
            if idle and self.loaded:
                try:
                    self._executor.submit(self._unload_if_idle)
                except RuntimeError:  # shut down meanwhile
                    return

    def _unload_if_idle(self) -> None:
        with self._lock:
            idle = self._pending == 0 and time.monotonic() - self._last_used >= self.keep_alive_s
        if idle and self._runner is not None:
            log.info("model %s: idle for %g s, unloading", self.spec.name, self.keep_alive_s)
            self._stop_runner("unloaded")


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_ino, st.st_mtime_ns


def default_threads() -> int:
    """Generation threads when DOCQA_N_THREADS is unset: every physical core.

    llama-cpp-python's own default is half the logical CPUs, meant for SMT machines; on a machine
    without SMT that leaves half the cores idle while answering (2 cores: 9.5 vs 20 tokens/s at a
    4,000-token depth, bench/results/llamabench.json). Prompt processing already uses every CPU."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1
