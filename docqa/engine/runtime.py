"""The one thread that owns a model's llama.cpp context.

A `Llama` object is not thread-safe, so each model gets a single worker thread; every use of its
context is a job submitted here. The queue in front of it is bounded and counts questions, not jobs:
a question takes a `Place` when it is accepted and holds it until it ends, however many jobs it
runs (a chunked answer runs one per chunk, then the reduce step). One question runs and at most
`queue_size` wait; past that a new one is refused at once (503 with a Retry-After estimated from
how long recent jobs took) instead of piling up, and a question once accepted is never refused
halfway. `status()` says what the model is doing, for /api/health.

Within a job, the document prefix is made resident before the question is appended:
1. already in the context's KV cells (the previous question was about the same documents) → free;
2. else a snapshot on disk (state_cache.py) is loaded → a read from disk, not a re-read;
3. else it is evaluated in slices of `n_batch` tokens, reporting progress and checking for
   cancellation between slices, and then snapshotted.
`Llama.generate` then reuses that prefix (it keeps the longest common token prefix and drops the
KV cells after it), so only the question and the answer are evaluated.
"""

from __future__ import annotations

import codecs
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import psutil
from llama_cpp import Llama

from docqa.engine.models import ModelSpec, ModelUnavailable
from docqa.engine.state_cache import ContextConfig, StateCache
from docqa.errors import DocqaError

log = logging.getLogger(__name__)

GGML_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
Progress = Callable[[dict[str, Any]], None]
TokenSink = Callable[[str, str], None]  # (kind: "thinking" | "token", text)


class QueueFull(DocqaError):
    status_code = 503
    code = "busy"


class Cancelled(DocqaError):
    status_code = 499
    code = "cancelled"


class ContextAllocationFailed(DocqaError):
    status_code = 507
    code = "context_allocation_failed"


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
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    presence_penalty: float = 0.0
    seed: int = -1


@dataclass
class Generation:
    text: str = ""
    thinking: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    generate_s: float = 0.0
    generated_tokens: int = 0
    prefix_source: str = "none"  # memory | disk | evaluated
    stop_reason: str = "eos"  # eos | length
    thinking_open: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_s if self.generate_s else 0.0


@dataclass
class Job:
    config: ContextConfig
    prefix: list[int]
    suffix: list[int]
    state_key: str
    max_tokens: int
    sampling: Sampling
    start_in_thinking: bool = False
    on_progress: Progress | None = None
    on_token: TokenSink | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class Runtime:
    def __init__(self, spec: ModelSpec, cache: StateCache, *, queue_size: int, n_threads: int | None,
                 use_mmap: bool = True) -> None:
        self.spec = spec
        self.use_mmap = use_mmap
        self.cache = cache
        self.queue_size = queue_size
        self.n_threads = n_threads
        self.llm: Llama | None = None
        self.config: ContextConfig | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{spec.name}")
        # Re-entrant: an abandoned Place may be collected (and release itself) while this thread holds it.
        self._lock = threading.RLock()
        self._pending = 0  # places held: the question being answered and those waiting
        self._job_s = 0.0  # moving average of how long a job holds the model, for Retry-After
        self._jobs_done = 0

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = self._pending
        # The oldest place is the question being answered, also in the moment between two of its jobs.
        running, waiting = min(pending, 1), max(pending - 1, 0)
        return {
            "state": "busy" if pending else "idle", "running": running, "waiting": waiting,
            "queue_depth": pending, "queue_size": self.queue_size, "loaded": self.llm is not None,
            "avg_job_s": round(self._job_s, 3) if self._jobs_done else None,
        }

    def _retry_after(self, pending: int) -> int:
        """Seconds until a slot is likely free: about one average job (the running one ends, a waiting one starts)."""
        if not self._jobs_done:
            return 10
        return max(1, min(300, math.ceil(self._job_s * pending / max(1, self.queue_size))))

    def reserve(self) -> Place:
        """Take a place in the queue for one question, or refuse now (QueueFull) when it is full."""
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

    def _release(self) -> None:  # by Place.release only
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._free()

    # -- everything below runs on the worker thread only ------------------------------------------

    def _free(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm, self.config = None, None

    def context(self, config: ContextConfig) -> Llama:
        if self.llm is not None and self.config == config:
            return self.llm
        self._free()
        self.spec.require()  # the file may have been removed or truncated since start: refuse, never crash
        kwargs: dict[str, Any] = dict(
            model_path=str(self.spec.path), n_ctx=config.n_ctx, n_batch=config.n_batch, n_ubatch=config.n_ubatch,
            flash_attn=config.flash_attn, type_k=GGML_TYPES[config.type_k], type_v=GGML_TYPES[config.type_v],
            n_threads=self.n_threads or default_threads(), n_threads_batch=self.n_threads or os.cpu_count(),
            verbose=False, swa_full=True, use_mmap=self.use_mmap,
        )
        if config.yarn_factor:
            kwargs.update(
                rope_scaling_type=llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
                rope_freq_scale=1.0 / config.yarn_factor,
                yarn_orig_ctx=config.n_ctx_train,
            )
        try:
            self.llm = Llama(**kwargs)
        except ValueError as exc:  # llama.cpp could not allocate the context; the reason is only in its log
            problem = self.spec.file_problem()
            if problem:  # the file changed between the check and the load
                raise ModelUnavailable(f"The model {self.spec.name!r} cannot be used: {problem}") from exc
            raise ContextAllocationFailed(
                f"llama.cpp could not create a {config.n_ctx:,}-token context ({config.type_k} KV) "
                f"for {self.spec.name!r}: {exc}."
            ) from exc
        self.config = config
        return self.llm

    def _run(self, job: Job) -> Generation:
        # Checked for every job, not only when a context is created: a model file truncated under
        # llama.cpp's memory map would kill the process (SIGBUS) at the next evaluation. (Truncated
        # during an evaluation, it still would: DOCQA_MMAP=false copies the weights and closes that.)
        if self.llm is not None and self.spec.file_problem():
            self._free()
        llm = self.context(job.config)
        gen = Generation()
        t0 = time.perf_counter()
        prompt = job.prefix + job.suffix
        gen.prompt_tokens = len(prompt)
        gen.prefix_source, gen.cached_tokens = self._resident_prefix(llm, job, prompt)
        self._generate(llm, job, prompt, gen, t0)
        return gen

    def _resident_prefix(self, llm: Llama, job: Job, prompt: list[int]) -> tuple[str, int]:
        """Where the prefix came from, and how many prompt tokens this job did not evaluate."""
        held = llm.input_ids[: llm.n_tokens].tolist()
        resident = _common_prefix(held, job.prefix)
        if resident == len(job.prefix):
            return "memory", min(_common_prefix(held, prompt), len(prompt) - 1)
        if self.cache.load(llm.ctx, job.state_key, job.prefix):
            llm.input_ids[: len(job.prefix)] = job.prefix
            llm.n_tokens = len(job.prefix)
            return "disk", len(job.prefix)
        # A snapshot that failed inside llama.cpp took the sequence's cells with it: keep only
        # what the KV cache really still holds, or the question would be read without its start.
        resident = min(resident, _cells_held(llm))
        llm.n_tokens = resident  # eval() drops the KV cells after this point first
        self._prefill(llm, job, resident)
        self.cache.save(llm.ctx, job.state_key, job.prefix)
        return "evaluated", resident

    def _prefill(self, llm: Llama, job: Job, start: int) -> None:
        total = len(job.prefix)
        t0 = time.perf_counter()
        step = job.config.n_batch
        for i in range(start, total, step):
            if job.cancel.is_set():
                llm.n_tokens = i
                raise Cancelled("The question was cancelled while the documents were being read.")
            llm.eval(job.prefix[i : i + step])
            if job.on_progress:
                done = min(i + step, total)
                elapsed = time.perf_counter() - t0
                rate = (done - start) / elapsed if elapsed else 0.0
                job.on_progress({
                    "tokens_done": done, "tokens_total": total, "tokens_per_s": round(rate, 1),
                    "eta_s": round((total - done) / rate, 1) if rate else None,
                })

    def _generate(self, llm: Llama, job: Job, prompt: list[int], gen: Generation, t0: float) -> None:
        vocab = llm._model.vocab
        splitter = ThinkingSplitter(
            lambda t: llm.detokenize([t]), special_id(llm, "<think>"), special_id(llm, "</think>"),
            thinking=job.start_in_thinking,
        )
        s = job.sampling
        llm.set_seed(s.seed if s.seed >= 0 else random.randrange(2**31))
        t_gen = 0.0
        for token in llm.generate(
            prompt, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
            presence_penalty=s.presence_penalty, repeat_penalty=1.0, reset=True,
        ):
            if not t_gen:
                gen.prefill_s = time.perf_counter() - t0
                gen.prefill_tokens = len(prompt) - gen.cached_tokens
                t_gen = time.perf_counter()
            if job.cancel.is_set():
                raise Cancelled("The question was cancelled while the answer was being written.")
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            gen.generated_tokens += 1
            kind, piece = splitter.feed(token)
            if piece and job.on_token:
                job.on_token(kind, piece)
            if gen.generated_tokens >= job.max_tokens:
                gen.stop_reason = "length"
                break
        gen.generate_s = time.perf_counter() - t_gen if t_gen else 0.0
        gen.text, gen.thinking = splitter.answer, splitter.reasoning
        gen.thinking_open = splitter.thinking


class ThinkingSplitter:
    """Route generated tokens to the reasoning or the answer.

    Qwen3-Thinking's template opens `<think>` itself, so its output holds only `</think>`:
    everything before it is reasoning. Hybrid models emit both tags. The tags are matched as
    token ids looked up in the vocabulary (151668 is `</think>` for Qwen3), never as text, so a
    document that says "</think>" cannot end the reasoning early.
    """

    def __init__(self, detokenize: Callable[[int], bytes], think_start: int | None, think_end: int | None,
                 *, thinking: bool = False) -> None:
        self.detokenize = detokenize
        self.think_start = think_start
        self.think_end = think_end
        self.thinking = thinking
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._answer: list[str] = []
        self._reasoning: list[str] = []

    def feed(self, token: int) -> tuple[str, str]:
        if token == self.think_start:
            self.thinking = True
            return "thinking", ""
        if token == self.think_end:
            self.thinking = False
            return "token", ""
        piece = self._decoder.decode(self.detokenize(token))
        kind = "thinking" if self.thinking else "token"
        (self._reasoning if self.thinking else self._answer).append(piece)
        return kind, piece

    @property
    def answer(self) -> str:
        return "".join(self._answer).strip()

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning).strip()


def default_threads() -> int:
    """Generation threads when DOCQA_N_THREADS is unset: every physical core.

    llama-cpp-python's own default is half the logical CPUs, meant for SMT machines; on a machine
    without SMT that leaves half the cores idle while answering (2 cores: 9.5 vs 20 tokens/s at a
    4,000-token depth, bench/results/llamabench.json). Prompt processing already uses every CPU."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _cells_held(llm: Llama) -> int:
    """How many leading positions of sequence 0 have KV cells (0 when it does not start at 0)."""
    mem = llama_cpp.llama_get_memory(llm.ctx)
    if llama_cpp.llama_memory_seq_pos_min(mem, 0) != 0:
        return 0
    return llama_cpp.llama_memory_seq_pos_max(mem, 0) + 1


def special_id(llm: Llama, text: str) -> int | None:
    """The id of `text` when the vocabulary has it as one special token (e.g. `</think>`)."""
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    return ids[0] if len(ids) == 1 else None
