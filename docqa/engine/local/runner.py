"""The runner: the process that owns one model's llama.cpp objects.

A native fault in llama.cpp or ggml (a kernel bug on a new CPU, a hostile or truncated GGUF, the
OOM killer) kills the process it happens in. So the `Llama` objects, their contexts, prompt
reading, generation and KV snapshots live here, in a process of their own per loaded model, and
the web process (runtime.py) only sends work and reads back what happens. This is how Ollama and
LM Studio run models too.

The pipe carries, web → runner: ("job", id, Work), ("cancel", id), ("stop",);
runner → web: ("hello", info), ("phase", id, name), ("progress", id, dict), ("token", id, kind,
text), ("done", id, Generation), ("error", id, code, detail, extra), and last, once stopped, ("stopped",
report): the snapshots it wrote or gave up while stopping (SnapshotWriter.finish).

Within a job, the document prefix is made resident before the question is appended:
1. already in the context's KV cells (the previous question was about the same documents) → free;
2. else a snapshot on disk (state_cache.py) is loaded → a read from disk, not a re-read;
3. else it is evaluated in slices of `n_batch` tokens, reporting progress and checking for
   cancellation between slices.
`Llama.generate` then reuses that prefix, so only the question and the answer are evaluated. A
freshly read prefix is snapshotted *after* the answer has been sent (and the question's and
answer's cells dropped): its state is copied to memory (milliseconds) and a writer thread writes the
file, so neither this question's first token nor the next question waits for the disk. The writer
gives way to a following job for a few seconds at most (SnapshotWriter), and a stop waits for it.

Priorities (runtime.py): the web process may ask a running job to yield ("yield", id) for
higher-priority work. It stops at its next prefill slice or generated token and answers ("yielded",
id, info): the cells it read stay resident and are kept as a *partial snapshot* (the first tokens of
the prefix, a valid state of its own, under `partial_key`), so when it is sent again it continues
where it stopped instead of reading again, even if the job that ran meanwhile used other documents.
A read-ahead job (Work.read_ahead) only makes its prefix resident and snapshots it.

The runner never outlives the web process: a thread ends it when the pipe closes or the parent
process is gone (a SIGKILLed server leaves no runner behind).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import json
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

from docqa.engine.backend import Generation
from docqa.engine.local import cpu
from docqa.engine.local.state_cache import ContextConfig, SnapshotAbandoned, StateCache, copy_state, restore_state
from docqa.engine.local.work import Work, Yielded
from docqa.engine.loops import looping
from docqa.errors import Cancelled, ContextAllocationFailed, DocqaError

LOOP_CHECK_TOKENS = 16  # how often the answer so far is checked for a loop (loops.looping)
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
    # A state up to this size is copied to memory and written to disk by a background thread; a larger
    # one is written directly (after the answer), so a huge context is never held twice in memory.
    copy_state_bytes: int = 2 * 1024**3
    # Stopping: how long the runner waits for the snapshots still being written (DOCQA_SNAPSHOT_STOP_WAIT).
    snapshot_stop_wait_s: float = 60.0


PROMOTE_AFTER_S = 3.0  # a snapshot write waits for a question for at most this long, then goes on beside it


@dataclass
class _Write:
    key: str
    tokens: list[int]
    state: Any
    evict_before: float | None


class SnapshotWriter:
    """Writes copied sequence states to disk on a thread of its own, in order, so no question waits for
    a snapshot file: the question's path holds only a memory copy. Until a state is written it is
    `pending` (loaded from memory, and shown by a marker file that health reads).

    The writer gives way to questions without starving: it writes in chunks (state_cache.WRITE_CHUNK)
    and, while a job runs (`busy`), waits before its next chunk, for at most PROMOTE_AFTER_S of that
    job. A warm follow-up (about a second) so runs alone, as it did when the writer was in the idle
    scheduling class (on 2 cores hashing and writing beside it cost it about a second), but a write
    still pending when a long job arrives (a cold reading, a long answer) is promoted after the bound
    and finishes beside it instead of waiting minutes, or for ever on a busy machine, as the idle class
    did (a stop right after a follow-up found the snapshot unwritten; issue #30). Stopping (`finish`)
    promotes every pending write at once and waits for them, bounded by DOCQA_SNAPSHOT_STOP_WAIT."""

    def __init__(self, cache: StateCache, promote_after_s: float = PROMOTE_AFTER_S) -> None:
        self.cache = cache
        self.promote_after_s = promote_after_s
        self._cond = threading.Condition()
        self._queue: collections.deque[_Write] = collections.deque()
        self._pending: dict[str, tuple[list[int], Any]] = {}
        self._writing: _Write | None = None
        self._busy_since: float | None = None
        self._urgent = 0  # flushes waiting: writes are not held back meanwhile
        self._stopping = False
        self._abandon = False
        self._stop_log: dict[str, list[int]] = {"saved": [], "saved_bytes": [], "abandoned": []}
        self._thread: threading.Thread | None = None

    def put(self, key: str, tokens: list[int], state: Any, evict_before: float | None = None) -> None:
        if self.cache.cap_bytes <= 0:
            return
        try:  # a marker while it is written (health: snapshot_writes); a folder that cannot be written is
            self.cache.root.mkdir(parents=True, exist_ok=True)  # said now, not after the next question
            self._marker(key).write_text(json.dumps({"tokens": len(tokens), "bytes": len(state)}))
        except OSError as exc:
            logging.getLogger("docqa.engine.local.state_cache").warning("could not save KV snapshot %s: %s",
                                                                        key[:12], exc)
            return
        with self._cond:
            self._pending[key] = (tokens, state)
            self._queue.append(_Write(key, tokens, state, evict_before))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="snapshot-writer")
                self._thread.start()
            self._cond.notify_all()

    def pending(self, key: str) -> tuple[list[int], Any] | None:
        with self._cond:
            return self._pending.get(key)

    def forget(self, key: str) -> None:
        """Drop a pending state (it is not written) and any file already written under `key`."""
        with self._cond:
            if self._pending.pop(key, None) is not None:
                with contextlib.suppress(OSError):
                    self._marker(key).unlink(missing_ok=True)
        self.cache.discard(key)

    def busy(self) -> None:
        """A job starts: writes wait for it, for at most `promote_after_s`."""
        with self._cond:
            self._busy_since = time.monotonic()

    def idle(self) -> None:
        with self._cond:
            self._busy_since = None
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every pending state is written (not held back by a running job meanwhile)."""
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._queue or self._writing is not None:
                    self._cond.wait()
            finally:
                self._urgent -= 1

    def finish(self, wait_s: float) -> dict[str, Any]:
        """Stopping: write every pending state now, waiting at most `wait_s` seconds; what is not written by
        then is given up (its temp file removed; its documents will be read again). Says what happened:
        saved/abandoned (counts), saved_tokens, saved_bytes, abandoned_tokens, seconds."""
        t0 = time.monotonic()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            deadline = t0 + max(0.0, wait_s)
            while (self._queue or self._writing is not None) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._queue or self._writing is not None:
                self._abandon = True  # the writer drops the rest, each at its next chunk
                self._cond.notify_all()
                while self._queue or self._writing is not None:
                    self._cond.wait()
            done = self._stop_log
        return {"saved": len(done["saved"]), "saved_tokens": sum(done["saved"]),
                "saved_bytes": sum(done["saved_bytes"]), "abandoned": len(done["abandoned"]),
                "abandoned_tokens": sum(done["abandoned"]),
                "seconds": round(time.monotonic() - t0, 3), "wait_s": wait_s}

    def _marker(self, key: str) -> Path:
        return self.cache.root / f"{key}.{os.getpid()}.pending"

    def _pace(self) -> None:
        """Before each chunk: give the write up when stopping ran out of time; wait while a job has run for
        less than `promote_after_s` (never while stopping or flushing)."""
        with self._cond:
            while True:
                if self._abandon:
                    raise SnapshotAbandoned
                if self._stopping or self._urgent or self._busy_since is None:
                    return
                left = self._busy_since + self.promote_after_s - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._writing = self._queue.popleft()
                current = self._pending.get(item.key)
                live = current is not None and current[1] is item.state  # not forgotten or replaced meanwhile
                stopping = self._stopping
            try:
                if live and self._abandon:
                    raise SnapshotAbandoned
                if live and self.cache.write(item.key, item.tokens, item.state, evict_before=item.evict_before,
                                             pace=self._pace) and (stopping or self._stopping):
                    self._stop_log["saved"].append(len(item.tokens))
                    self._stop_log["saved_bytes"].append(len(item.state))
            except SnapshotAbandoned:
                self._stop_log["abandoned"].append(len(item.tokens))
            except Exception:  # noqa: BLE001 - a snapshot that cannot be written never fails anything
                logging.getLogger(__name__).exception("could not write KV snapshot %s", item.key[:12])
            finally:
                with self._cond:
                    if self._pending.get(item.key, (None, None))[1] is item.state:
                        del self._pending[item.key]
                        with contextlib.suppress(OSError):
                            self._marker(item.key).unlink(missing_ok=True)
                    self._writing = None
                    self._cond.notify_all()


class ModelHost:
    """One model's llama.cpp context and what runs on it (single-threaded: the runner's main thread)."""

    def __init__(self, params: HostParams) -> None:
        self.params = params
        self.cache = StateCache(Path(params.state_dir), params.state_cache_bytes)
        self.llm: Llama | None = None
        self.config: ContextConfig | None = None
        self.writer = SnapshotWriter(self.cache)
        # a prefix read but not yet snapshotted: (key, tokens, evict_before)
        self._unsaved: tuple[str, list[int], float | None] | None = None
        self._read_ahead: dict[str, int] = {}  # state key -> prefix tokens read ahead, until a question uses them

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

    def run(self, work: Work, emit: Emit, cancel: threading.Event,
            yield_now: threading.Event | None = None) -> Generation:
        """Make the prefix resident, then generate (nothing for a read-ahead). When `yield_now` is set
        (higher-priority work arrived), stop at the next slice or token with `Yielded`: the cells read
        so far stay, and a partial snapshot of them is kept, so the job resumes where it stopped."""
        emit("phase", "loading")
        llm = self.context(work.config)
        emit("phase", "reading")
        gen = Generation()
        t0 = time.perf_counter()
        prompt = work.prefix + work.suffix
        gen.prompt_tokens = len(prompt)
        try:
            gen.prefix_source, gen.cached_tokens = self._resident_prefix(llm, work, prompt, emit, cancel, yield_now)
        except Yielded as y:
            if work.read_ahead:  # a question on these documents next starts from what it read
                self._read_ahead[work.state_key] = max(self._read_ahead.get(work.state_key, 0),
                                                       int(y.info["tokens_done"]))
            raise
        if work.read_ahead:
            self._read_ahead[work.state_key] = max(self._read_ahead.get(work.state_key, 0),
                                                   min(llm.n_tokens, len(work.prefix)))
            gen.prefill_s = time.perf_counter() - t0
            gen.prefill_tokens = max(0, min(llm.n_tokens, len(work.prefix)) - gen.cached_tokens)
            return gen
        read = self._read_ahead.pop(work.state_key, 0)
        if read and gen.cached_tokens:
            gen.prefix_source, gen.read_ahead_tokens = "read-ahead", min(read, gen.cached_tokens)
        self._generate(llm, work, prompt, gen, t0, emit, cancel, yield_now)
        return gen

    def settle(self) -> None:
        """After a job has answered: keep only the prefix's cells (the next question on these documents
        starts from it) and snapshot it if it was just read: a copy in memory, written to disk by the
        writer thread, so the next question never waits for the file."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is None or self.llm is None:
            return
        key, prefix, evict_before = unsaved
        llm = self.llm
        if llm.input_ids[: len(prefix)].tolist() != prefix or _cells_held(llm) < len(prefix):
            return
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, len(prefix), -1)
        llm.n_tokens = len(prefix)
        self.snapshot(llm, key, prefix, evict_before)
        self.writer.forget(partial_key(key))  # the whole prefix is kept now

    def snapshot(self, llm: Llama, key: str, tokens: list[int], evict_before: float | None = None) -> None:
        """Keep sequence 0 (holding `tokens`) under `key`: copied now, written by the writer thread."""
        if llama_cpp.llama_state_seq_get_size(llm.ctx, 0) > self.params.copy_state_bytes:
            self.writer.flush()
            self.cache.save(llm.ctx, key, tokens)
            return
        self.writer.put(key, list(tokens), copy_state(llm.ctx), evict_before)

    def _load(self, llm: Llama, key: str, tokens: list[int]) -> bool:
        """Restore the snapshot `key` (still in memory, or from disk) holding exactly `tokens`."""
        pending = self.writer.pending(key)
        if pending is not None and pending[0] == tokens:
            ok = restore_state(llm.ctx, pending[1])
        else:
            ok = self.cache.load(llm.ctx, key, tokens)
        if ok:
            llm.input_ids[: len(tokens)] = tokens
            llm.n_tokens = len(tokens)
        return ok

    def _partial(self, key: str, prefix: list[int]) -> int:
        """How many tokens of `prefix` the partial snapshot of `key` holds (0: none)."""
        pk = partial_key(key)
        pending = self.writer.pending(pk)
        n = len(pending[0]) if pending is not None else (self.cache.n_tokens(pk) or 0)
        return n if 0 < n <= len(prefix) else 0

    def _resident_prefix(self, llm: Llama, work: Work, prompt: list[int], emit: Emit,
                         cancel: threading.Event, yield_now: threading.Event | None = None) -> tuple[str, int]:
        """Where the prefix came from, and how many prompt tokens this job did not evaluate."""
        held = llm.input_ids[: llm.n_tokens].tolist()
        resident = _common_prefix(held, work.prefix)
        target = work.prefix[: work.read_limit] if work.read_ahead and work.read_limit else work.prefix
        if resident >= len(target):
            return "memory", min(_common_prefix(held, prompt), len(prompt) - 1, len(target))
        if self._load(llm, work.state_key, work.prefix):
            return "disk", len(work.prefix)
        # A snapshot that failed inside llama.cpp took the sequence's cells with it: keep only
        # what the KV cache really still holds, or the question would be read without its start.
        resident = min(resident, _cells_held(llm))
        source = "evaluated"
        partial = self._partial(work.state_key, work.prefix)
        if partial > resident:  # an earlier job (a read-ahead, a batch item that gave way) read this far
            if self._load(llm, partial_key(work.state_key), work.prefix[:partial]):
                resident, source = partial, "partial"
            else:
                resident = min(resident, _cells_held(llm))
        llm.n_tokens = resident  # eval() drops the KV cells after this point first
        t0 = time.perf_counter()
        try:
            step = min(work.slice_tokens or work.config.n_batch, work.config.n_batch)
            prefill(llm, target, resident, step, emit if work.progress else None, cancel, yield_now)
        except Yielded as y:
            done = int(y.info["tokens_done"])
            if done > max(resident, partial):
                self.snapshot(llm, partial_key(work.state_key), work.prefix[:done], work.evict_before)
            y.info.update(cached_tokens=resident, prefix_source=source)
            raise
        if len(target) < len(work.prefix):  # a read-ahead limited in tokens: a partial snapshot
            if len(target) > partial:
                self.snapshot(llm, partial_key(work.state_key), target, work.evict_before)
        elif time.perf_counter() - t0 > self.params.snapshot_first_after_s:
            emit("phase", "saving")
            self.snapshot(llm, work.state_key, work.prefix)
            self.writer.forget(partial_key(work.state_key))
        else:
            self._unsaved = (work.state_key, list(work.prefix), work.evict_before)
        return source, resident

    def _generate(self, llm: Llama, work: Work, prompt: list[int], gen: Generation, t0: float, emit: Emit,
                  cancel: threading.Event, yield_now: threading.Event | None = None) -> None:
        vocab = llm._model.vocab
        splitter = ThinkingSplitter(
            lambda t: llm.detokenize([t]), special_id(llm, "<think>"), special_id(llm, "</think>"),
            thinking=work.start_in_thinking,
        )
        for token in work.resume:  # what it wrote before it gave way: already sent, not sent again
            splitter.feed(token)
        generated = list(work.resume)
        gen.generated_tokens = len(generated)
        s = work.sampling
        llm.set_seed(s.seed if s.seed >= 0 else random.randrange(2**31))
        t_gen = 0.0
        for token in llm.generate(
            prompt + generated, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
            presence_penalty=s.presence_penalty, repeat_penalty=1.0, reset=True,
        ):
            if not t_gen:
                gen.prefill_s = time.perf_counter() - t0
                gen.prefill_tokens = len(prompt) - gen.cached_tokens
                t_gen = time.perf_counter()
                emit("phase", "writing")
            if cancel.is_set():
                raise Cancelled("The question was cancelled while the answer was being written.")
            if yield_now is not None and yield_now.is_set():
                raise Yielded({"phase": "writing", "tokens_done": len(work.prefix), "generated": generated,
                               "cached_tokens": gen.cached_tokens, "prefix_source": gen.prefix_source,
                               "prefill_s": gen.prefill_s, "prefill_tokens": gen.prefill_tokens,
                               "generate_s": time.perf_counter() - t_gen})
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            generated.append(token)
            gen.generated_tokens += 1
            kind, piece = splitter.feed(token)
            if piece and work.stream:
                emit("token", kind, piece)
            if gen.generated_tokens >= work.max_tokens:
                gen.stop_reason = "length"
                break
            if gen.generated_tokens % LOOP_CHECK_TOKENS == 0 and looping(splitter.answer):
                gen.stop_reason = "loop"  # engine.py cuts the loop and says so in the notes
                break
        gen.generate_s = time.perf_counter() - t_gen if t_gen else 0.0
        gen.text, gen.thinking = splitter.answer, splitter.reasoning
        gen.thinking_open = splitter.thinking


def partial_key(key: str) -> str:
    """Where the partial snapshot of the prefix `key` (its first tokens, read before a yield) is kept."""
    return f"{key}-p"


def prefill(llm: Llama, tokens: list[int], start: int, step: int, emit: Emit | None,
            cancel: threading.Event | None = None, yield_now: threading.Event | None = None) -> None:
    """Evaluate tokens[start:] in slices of `step`, reporting progress and checking for cancellation
    and for a request to yield between slices (the cells before `start` are already in the KV cache)."""
    total = len(tokens)
    t0 = time.perf_counter()
    for i in range(start, total, step):
        if cancel is not None and cancel.is_set():
            llm.n_tokens = i
            raise Cancelled("The question was cancelled while the documents were being read.")
        if yield_now is not None and yield_now.is_set():
            llm.n_tokens = i
            raise Yielded({"phase": "reading", "tokens_done": i, "generated": []})
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


def _read(inbox: Any, jobs: queue.Queue[tuple[int, Work] | None], cancels: dict[int, threading.Event],
          yields: dict[int, threading.Event]) -> None:
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):  # the web process closed the pipe or is gone
            os._exit(0)
        if message[0] == "job":
            cancels[message[1]] = threading.Event()
            yields[message[1]] = threading.Event()
            jobs.put((message[1], message[2]))
        elif message[0] in ("cancel", "yield"):
            event = (cancels if message[0] == "cancel" else yields).get(message[1])
            if event is not None:
                event.set()
        elif message[0] == "stop":
            jobs.put(None)
            return


class _Outbox:
    """The pipe to the web process, shared by the main thread, the log handler and the snapshot writer."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self._lock:
            self.conn.send(message)


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
    # Ctrl-C in a terminal and a service manager's SIGTERM (systemd signals the whole group) reach the runner
    # too: the server stops it itself, once the snapshots it is writing are on disk (`finish`); a runner whose
    # server is gone exits within a second (_orphan_watch).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    outbox = _Outbox(outbox)
    root = logging.getLogger()
    root.handlers, root.level = [_PipeLog(outbox)], logging.INFO
    if params.parent_pid:
        threading.Thread(target=_orphan_watch, args=(params.parent_pid,), daemon=True).start()
    if params.fault == "start":
        os.kill(os.getpid(), signal.SIGSEGV)
    host = ModelHost(params)
    jobs: queue.Queue[tuple[int, Work] | None] = queue.Queue()
    cancels: dict[int, threading.Event] = {}
    yields: dict[int, threading.Event] = {}
    outbox.send(("hello", {"pid": os.getpid(), "system_info": cpu.system_info(),
                           "extra_buffers": params.extra_buffers}))
    threading.Thread(target=_read, args=(inbox, jobs, cancels, yields), daemon=True).start()
    while (item := jobs.get()) is not None:
        job_id, work = item
        emit: Emit = lambda kind, *args, _id=job_id: outbox.send((kind, _id, *args))  # noqa: E731
        host.writer.busy()
        try:
            gen = host.run(work, emit, cancels[job_id], yields[job_id])
            outbox.send(("done", job_id, asdict(gen)))
        except Yielded as y:
            outbox.send(("yielded", job_id, y.info))
        except DocqaError as exc:
            outbox.send(("error", job_id, exc.code, exc.detail, exc.extra))
        except Exception as exc:  # a bug, not a crash: report it and stay up
            outbox.send(("error", job_id, "runner_error",
                         f"The model process met an unexpected error ({type(exc).__name__}: {exc}).", {}))
        finally:
            cancels.pop(job_id, None)
            yields.pop(job_id, None)
            host.writer.idle()
        outbox.send(("phase", job_id, "saving"))
        with contextlib.suppress(Exception):  # a snapshot that cannot be written never fails anything
            host.settle()
        outbox.send(("idle", job_id))
    # stopping: the snapshots copied but not yet written are written first, for at most the stop wait
    outbox.send(("stopped", host.writer.finish(params.snapshot_stop_wait_s)))
    host.free()


def local_host(spec: Any, state_dir: Path, state_cache_bytes: int = 0, *, n_threads: int | None = None,
               use_mmap: bool = True, extra_buffers: bool | None = None) -> ModelHost:
    """A ModelHost in this process, for benchmarks that measure llama.cpp without the pipe."""
    if extra_buffers is None:
        extra_buffers = cpu.use_extra_buffers("auto")[0]
    return ModelHost(HostParams(
        model_path=str(spec.path), model_name=spec.name, use_mmap=use_mmap,
        n_threads=n_threads or cpu.default_threads(), n_threads_batch=n_threads or os.cpu_count() or 1,
        extra_buffers=extra_buffers, state_dir=str(state_dir), state_cache_bytes=state_cache_bytes,
    ))


def _entry(argv: list[str]) -> None:
    """`python -m docqa.engine.local.runner IN_FD OUT_FD`: the pipes from the web process (runtime.py), whose
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
