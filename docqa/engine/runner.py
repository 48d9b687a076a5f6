"""The runner: the process that owns one model's llama.cpp objects.

A native fault in llama.cpp or ggml (a kernel bug on a new CPU, a hostile or truncated GGUF, the
OOM killer) kills the process it happens in. So the `Llama` objects, their contexts, prompt
reading, generation and KV snapshots live here, in a process of their own per loaded model, and
the web process (runtime.py) only sends work and reads back what happens. This is how Ollama and
LM Studio run models too.

The pipe carries, web → runner: ("job", id, Work), ("cancel", id), ("stop",);
runner → web: ("hello", info), ("phase", id, name), ("progress", id, dict), ("token", id, kind,
text), ("done", id, Generation), ("error", id, code, detail, extra).

Within a job, the document prefix is made resident before the question is appended:
1. already in the context's KV cells (the previous question was about the same documents) → free;
2. else a snapshot on disk (state_cache.py) is loaded → a read from disk, not a re-read;
3. else it is evaluated in slices of `n_batch` tokens, reporting progress and checking for
   cancellation between slices.
`Llama.generate` then reuses that prefix, so only the question and the answer are evaluated. A
freshly read prefix is snapshotted *after* the answer has been sent (and the question's and
answer's cells dropped), so writing the snapshot is never on the path to the first token.

The runner never outlives the web process: a thread ends it when the pipe closes or the parent
process is gone (a SIGKILLed server leaves no runner behind).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from docqa.engine.state_cache import ContextConfig, StateCache
from docqa.engine.work import Cancelled, ContextAllocationFailed, Generation, Work
from docqa.errors import DocqaError

GGML_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "q4_0": llama_cpp.GGML_TYPE_Q4_0}
Emit = Callable[..., None]


@dataclass
class HostParams:
    model_path: str
    model_name: str
    use_mmap: bool
    n_threads: int
    n_threads_batch: int
    extra_buffers: bool
    state_dir: str
    state_cache_bytes: int
    parent_pid: int = 0
    # A prefix that took longer than this to read is snapshotted before its answer is written: losing
    # it to a crash mid-answer would cost more than the write delays the first token (~1-3 % of the read).
    snapshot_first_after_s: float = 120.0
    fault: str | None = None  # tests only: "start" dies of SIGSEGV as soon as the runner starts


class ModelHost:
    """One model's llama.cpp context and what runs on it (single-threaded: the runner's main thread)."""

    def __init__(self, params: HostParams) -> None:
        self.params = params
        self.cache = StateCache(Path(params.state_dir), params.state_cache_bytes)
        self.llm: Llama | None = None
        self.config: ContextConfig | None = None
        self._unsaved: tuple[str, list[int]] | None = None  # a prefix read but not yet snapshotted

    def free(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm, self.config = None, None

    def context(self, config: ContextConfig) -> Llama:
        if self.llm is not None and self.config == config:
            return self.llm
        self.free()
        p = self.params
        kwargs: dict[str, Any] = dict(
            model_path=p.model_path, n_ctx=config.n_ctx, n_batch=config.n_batch, n_ubatch=config.n_ubatch,
            flash_attn=config.flash_attn, type_k=GGML_TYPES[config.type_k], type_v=GGML_TYPES[config.type_v],
            n_threads=p.n_threads, n_threads_batch=p.n_threads_batch, verbose=False, swa_full=True,
            use_mmap=p.use_mmap,
        )
        if config.yarn_factor:
            kwargs.update(
                rope_scaling_type=llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
                rope_freq_scale=1.0 / config.yarn_factor,
                yarn_orig_ctx=config.n_ctx_train,
            )
        try:
            self.llm = new_llama(kwargs, extra_buffers=p.extra_buffers)
        except ValueError as exc:  # llama.cpp could not allocate the context; the reason is only in its log
            raise ContextAllocationFailed(
                f"llama.cpp could not create a {config.n_ctx:,}-token context ({config.type_k} KV) "
                f"for {p.model_name!r}: {exc}."
            ) from exc
        self.config = config
        return self.llm

    def run(self, work: Work, emit: Emit, cancel: threading.Event) -> Generation:
        emit("phase", "loading")
        llm = self.context(work.config)
        emit("phase", "reading")
        gen = Generation()
        t0 = time.perf_counter()
        prompt = work.prefix + work.suffix
        gen.prompt_tokens = len(prompt)
        gen.prefix_source, gen.cached_tokens = self._resident_prefix(llm, work, prompt, emit, cancel)
        self._generate(llm, work, prompt, gen, t0, emit, cancel)
        return gen

    def settle(self) -> None:
        """After a job has answered: keep only the prefix's cells (the next question on these documents
        starts from it) and write its snapshot if it was just read."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is None or self.llm is None:
            return
        key, prefix = unsaved
        llm = self.llm
        if llm.input_ids[: len(prefix)].tolist() != prefix or _cells_held(llm) < len(prefix):
            return
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, len(prefix), -1)
        llm.n_tokens = len(prefix)
        self.cache.save(llm.ctx, key, prefix)

    def _resident_prefix(self, llm: Llama, work: Work, prompt: list[int], emit: Emit,
                         cancel: threading.Event) -> tuple[str, int]:
        """Where the prefix came from, and how many prompt tokens this job did not evaluate."""
        held = llm.input_ids[: llm.n_tokens].tolist()
        resident = _common_prefix(held, work.prefix)
        if resident == len(work.prefix):
            return "memory", min(_common_prefix(held, prompt), len(prompt) - 1)
        if self.cache.load(llm.ctx, work.state_key, work.prefix):
            llm.input_ids[: len(work.prefix)] = work.prefix
            llm.n_tokens = len(work.prefix)
            return "disk", len(work.prefix)
        # A snapshot that failed inside llama.cpp took the sequence's cells with it: keep only
        # what the KV cache really still holds, or the question would be read without its start.
        resident = min(resident, _cells_held(llm))
        llm.n_tokens = resident  # eval() drops the KV cells after this point first
        t0 = time.perf_counter()
        prefill(llm, work.prefix, resident, work.config.n_batch, emit if work.progress else None, cancel)
        if time.perf_counter() - t0 > self.params.snapshot_first_after_s:
            emit("phase", "saving")
            self.cache.save(llm.ctx, work.state_key, work.prefix)
        else:
            self._unsaved = (work.state_key, list(work.prefix))
        return "evaluated", resident

    def _generate(self, llm: Llama, work: Work, prompt: list[int], gen: Generation, t0: float, emit: Emit,
                  cancel: threading.Event) -> None:
        vocab = llm._model.vocab
        splitter = ThinkingSplitter(
            lambda t: llm.detokenize([t]), special_id(llm, "<think>"), special_id(llm, "</think>"),
            thinking=work.start_in_thinking,
        )
        s = work.sampling
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
                emit("phase", "writing")
            if cancel.is_set():
                raise Cancelled("The question was cancelled while the answer was being written.")
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            gen.generated_tokens += 1
            kind, piece = splitter.feed(token)
            if piece and work.stream:
                emit("token", kind, piece)
            if gen.generated_tokens >= work.max_tokens:
                gen.stop_reason = "length"
                break
        gen.generate_s = time.perf_counter() - t_gen if t_gen else 0.0
        gen.text, gen.thinking = splitter.answer, splitter.reasoning
        gen.thinking_open = splitter.thinking


def prefill(llm: Llama, tokens: list[int], start: int, step: int, emit: Emit | None,
            cancel: threading.Event | None = None) -> None:
    """Evaluate tokens[start:] in slices of `step`, reporting progress and checking for cancellation
    between slices (the cells before `start` are already in the KV cache)."""
    total = len(tokens)
    t0 = time.perf_counter()
    for i in range(start, total, step):
        if cancel is not None and cancel.is_set():
            llm.n_tokens = i
            raise Cancelled("The question was cancelled while the documents were being read.")
        llm.eval(tokens[i : i + step])
        if emit is not None:
            done = min(i + step, total)
            elapsed = time.perf_counter() - t0
            rate = (done - start) / elapsed if elapsed else 0.0
            emit("progress", {
                "tokens_done": done, "tokens_total": total, "tokens_per_s": round(rate, 1),
                "eta_s": round((total - done) / rate, 1) if rate else None,
            })


def new_llama(kwargs: dict[str, Any], *, extra_buffers: bool) -> Llama:
    """`Llama(**kwargs)` with llama.cpp's extra buffer types on or off (llama-cpp-python has no
    argument for `llama_model_params.use_extra_bufts`, so its defaults are adjusted for this call;
    only the runner's main thread creates models)."""
    if extra_buffers:
        return Llama(**kwargs)
    lib = llama_cpp.llama_cpp
    original = lib.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = defaults
    try:
        return Llama(**kwargs)
    finally:
        lib.llama_model_default_params = original


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


# -- the process ------------------------------------------------------------------------------------


def _orphan_watch(parent_pid: int) -> None:
    """End the runner within a second of its parent's death (a SIGKILLed server closes no pipe first)."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(0.25)


def _read(inbox: Any, jobs: queue.Queue[tuple[int, Work] | None], cancels: dict[int, threading.Event]) -> None:
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):  # the web process closed the pipe or is gone
            os._exit(0)
        if message[0] == "job":
            cancels[message[1]] = threading.Event()
            jobs.put((message[1], message[2]))
        elif message[0] == "cancel":
            event = cancels.get(message[1])
            if event is not None:
                event.set()
        elif message[0] == "stop":
            jobs.put(None)
            return


class _PipeLog(logging.Handler):
    """The runner's log records go to the web process, which logs them under the same logger names."""

    def __init__(self, outbox: Any) -> None:
        super().__init__(logging.INFO)
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.outbox.send(("log", record.levelno, record.name, record.getMessage()))


def main(inbox: Any, outbox: Any, params: HostParams) -> None:
    """The runner's work, once its pipes are open and its parameters read."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches the whole group: the server stops us
    root = logging.getLogger()
    root.handlers, root.level = [_PipeLog(outbox)], logging.INFO
    if params.parent_pid:
        threading.Thread(target=_orphan_watch, args=(params.parent_pid,), daemon=True).start()
    if params.fault == "start":
        os.kill(os.getpid(), signal.SIGSEGV)
    from docqa.engine.cpu import system_info

    host = ModelHost(params)
    jobs: queue.Queue[tuple[int, Work] | None] = queue.Queue()
    cancels: dict[int, threading.Event] = {}
    outbox.send(("hello", {"pid": os.getpid(), "system_info": system_info(),
                           "extra_buffers": params.extra_buffers}))
    threading.Thread(target=_read, args=(inbox, jobs, cancels), daemon=True).start()
    while (item := jobs.get()) is not None:
        job_id, work = item
        emit: Emit = lambda kind, *args, _id=job_id: outbox.send((kind, _id, *args))  # noqa: E731
        try:
            gen = host.run(work, emit, cancels[job_id])
            outbox.send(("done", job_id, asdict(gen)))
        except DocqaError as exc:
            outbox.send(("error", job_id, exc.code, exc.detail, exc.extra))
        except Exception as exc:  # a bug, not a crash: report it and stay up
            outbox.send(("error", job_id, "runner_error",
                         f"The model process met an unexpected error ({type(exc).__name__}: {exc}).", {}))
        finally:
            cancels.pop(job_id, None)
        outbox.send(("phase", job_id, "saving"))
        with contextlib.suppress(Exception):  # a snapshot that cannot be written never fails anything
            host.settle()
        outbox.send(("idle", job_id))
    host.free()


def local_host(spec: Any, state_dir: Path, state_cache_bytes: int = 0, *, n_threads: int | None = None,
               use_mmap: bool = True, extra_buffers: bool | None = None) -> ModelHost:
    """A ModelHost in this process, for benchmarks that measure llama.cpp without the pipe."""
    from docqa.engine import cpu
    from docqa.engine.runtime import default_threads

    if extra_buffers is None:
        extra_buffers = cpu.use_extra_buffers("auto")[0]
    return ModelHost(HostParams(
        model_path=str(spec.path), model_name=spec.name, use_mmap=use_mmap,
        n_threads=n_threads or default_threads(), n_threads_batch=n_threads or os.cpu_count() or 1,
        extra_buffers=extra_buffers, state_dir=str(state_dir), state_cache_bytes=state_cache_bytes,
    ))


def _entry(argv: list[str]) -> None:
    """`python -m docqa.engine.runner IN_FD OUT_FD`: the pipes from the web process (runtime.py), whose
    first message is the HostParams."""
    from multiprocessing.connection import Connection

    inbox, outbox = Connection(int(argv[0]), writable=False), Connection(int(argv[1]), readable=False)
    try:
        kind, params = inbox.recv()
    except (EOFError, OSError):
        os._exit(0)
    if kind != "params":
        os._exit(2)
    main(inbox, outbox, params)


if __name__ == "__main__":
    import sys

    _entry(sys.argv[1:])
