"""Servers that are not llama-server, behind the same `RemoteBackend` (remote.py): their dialects.

remote.py asks each server what it is; a server that is not llama-server gets a *dialect* from this
module's subclasses (vllm.py, sglang.py, or `OpenAICompatible` for any other OpenAI-compatible server),
and everything that differs per engine goes through it:

- `probe`: what it serves (`/v1/models`: the model and its `max_model_len`, the context one question gets);
- `template` and `tokenize`: the chat template and exact tokens. vLLM and SGLang have `/tokenize`; a
  server without one is answered only when its `DOCQA_MODELS` entry names the model's tokenizer
  (`big=http://host:8000#tokenizer=/models/model.gguf`: a GGUF's vocabulary, read by llama.cpp without
  weights), and is refused with a sentence saying so otherwise;
- `complete`: one streamed completion of the prompt's token ids (`/v1/completions`, whose `prompt` may be
  token ids), with the thinking split, `cached_tokens` as the server reports them, and the errors as for
  llama-server (the failover around it is remote.py's).

None of these engines reports how far it has read a prompt. Where docqa's page would show llama-server's
`prompt_progress`, it gets an *estimate* instead, from the reading rate measured on that server for that
model (`RecentRates` below), every event marked `"estimated": true` and `"source": "estimate"`;
without a measured rate it says so (`tokens_done: null`) rather than inventing one. When the first token
arrives the reading is over, and the last progress event says that exactly (`estimated: false`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from docqa.engine.backend import Generation
from docqa.engine.remote.client import Server, ThinkingSplit, Unusable, stream_chunks
from docqa.engine.template import ChatTemplate, tokenize_pieces
from docqa.errors import RemoteStreamCut

if TYPE_CHECKING:
    from docqa.engine.backend import Request

GENERIC = "a generic OpenAI-compatible server"
TICK_S = 0.5



# As reading.py's estimate from stored readings: a reading shorter than this says little about a rate, and
# readings within this factor of the tokens to read are "at a similar depth".
MIN_TOKENS = 32
DEPTH_FACTOR = 4.0


class RecentRates:
    """Reading rates measured by one remote server in this process (tokens read, seconds to the first
    token), for servers that report no progress of their own: the estimate of how far a reading is (an
    estimate, and said to be one) uses the readings at a similar depth, as `ReadingRates` does."""

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self._samples: list[tuple[int, float]] = []

    def add(self, tokens: int, seconds: float) -> None:
        if tokens >= MIN_TOKENS and seconds > 0:
            self._samples = [*self._samples, (tokens, seconds)][-self.keep:]

    def _use(self, tokens: int) -> tuple[list[tuple[int, float]], bool]:
        samples = self._samples
        near = [(n, s) for n, s in samples if tokens / DEPTH_FACTOR <= n <= tokens * DEPTH_FACTOR]
        return (near or samples), bool(near)

    def rate(self, tokens: int) -> float | None:
        use, _ = self._use(max(1, tokens))
        return sum(n for n, _ in use) / sum(s for _, s in use) if use else None

    def basis(self, tokens: int) -> str:
        use, near = self._use(max(1, tokens))
        if not use:
            return "no reading by this model has been measured on this server yet; the first question measures it"
        rate = sum(n for n, _ in use) / sum(s for _, s in use)
        depth = "at a similar depth" if near else "at other depths (none near this one yet)"
        return (f"estimated at {rate:,.0f} tokens/s, measured for this model on this server over {len(use)} "
                f"reading{'' if len(use) == 1 else 's'} {depth}")

    def describe(self) -> dict[str, Any]:
        return {"samples": len(self._samples), "tokens_per_s": round(r, 1) if (r := self.rate(1)) else None}


class OpenAICompatible:
    """Any OpenAI-compatible server: `/v1/completions` with token ids, tokens counted locally."""

    kind = GENERIC
    completions_path = "/v1/completions"
    progress = False  # reports how far it has read: none of these do
    snapshots = False  # prefix states saved to and restored from disk
    cached_counts = True  # reports the prompt tokens it took from its cache

    def __init__(self, server: Server, tokenizer: Path | None = None) -> None:
        self.server = server
        self.tokenizer = tokenizer
        self.model_id = ""
        self.rates = RecentRates()
        self._template: ChatTemplate | None = None
        self._vocab: Any = None

    # -- what it serves ---------------------------------------------------------------------------

    def probe(self, c: httpx.Client, t: httpx.Timeout) -> None:
        r = c.get("/v1/models", timeout=t)
        data = (r.json().get("data") or []) if r.status_code == 200 else []
        if not data:
            raise Unusable(f"it is {self.kind} but lists no model at /v1/models")
        model = data[0]
        self.model_id = str(model.get("id") or "")
        served = model.get("max_model_len") or self._local_ctx()
        if not served:
            raise Unusable(f"it is {self.kind} and says no context length (max_model_len at /v1/models); name the "
                           "model's GGUF in DOCQA_MODELS (URL#tokenizer=PATH) so docqa can read it there")
        s = self.server
        s.n_ctx, s.slots = int(served), 1
        s.meta = {"n_ctx_train": int(served)}
        s.props = {"model_path": self.model_id}
        self._check_tokenizer(c, t)

    def _check_tokenizer(self, c: httpx.Client, t: httpx.Timeout) -> None:
        if self.tokenizer is None:
            raise Unusable(f"it is {self.kind} without a /tokenize endpoint, so docqa cannot count its tokens; name "
                           "the model's GGUF in its DOCQA_MODELS entry (big=URL#tokenizer=/path/model.gguf)")
        self._local()

    def _local(self) -> Any:
        """The tokenizer named in DOCQA_MODELS: a GGUF's vocabulary, read without its weights."""
        if self._vocab is None:
            from docqa.engine.local import load_spec

            assert self.tokenizer is not None
            spec = load_spec(f"{self.server.url} tokenizer", self.tokenizer)
            if spec.error or spec.info is None:
                raise Unusable(f"its tokenizer {self.tokenizer} cannot be read: {spec.error}")
            self._vocab = (spec, spec.vocab())
        return self._vocab

    def _local_ctx(self) -> int | None:
        if self.tokenizer is None:
            return None
        spec, _ = self._local()
        return spec.shape.n_ctx_train if spec.shape else None

    # -- tokens -----------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        if self._template is None:
            spec, vocab = self._local()
            bos = vocab.detokenize([vocab.token_bos()], special=True).decode("utf-8", "replace")
            eos = vocab.detokenize([vocab.token_eos()], special=True).decode("utf-8", "replace")
            self._template = ChatTemplate(spec.info.chat_template, bos, eos)
        return self._template

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        _, vocab = self._local()
        return tokenize_pieces(vocab, [(text, special)], add_bos=add_bos, bos_text="")

    # -- answering --------------------------------------------------------------------------------

    def body(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "prompt": request.prefix + request.suffix, "max_tokens": max(1, request.max_tokens), "stream": True,
            "stream_options": {"include_usage": True}, "temperature": s.temperature, "top_p": s.top_p,
            "presence_penalty": s.presence_penalty,
        }
        if self.model_id:
            body["model"] = self.model_id
        if s.seed >= 0:
            body["seed"] = s.seed
        return body

    def parse(self, chunk: dict[str, Any], state: dict[str, Any]) -> tuple[str, bool]:
        """(new text, finished) of one streamed chunk; usage and the stop reason go into `state`."""
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return "", False
        choice = choices[0]
        if choice.get("finish_reason"):
            state["stop"] = "length" if choice["finish_reason"] == "length" else "eos"
        return str(choice.get("text") or ""), False

    def cached(self, state: dict[str, Any]) -> int:
        details = (state.get("usage") or {}).get("prompt_tokens_details") or {}
        return int(details.get("cached_tokens") or 0)

    def complete(self, request: Request, streamed: list[bool], expect_cached: int) -> Generation:
        """One streamed completion; tokens go to `request.on_token` (and `streamed[0]` turns True)."""
        server = self.server
        split = ThinkingSplit(request.start_in_thinking)
        total = len(request.prefix) + len(request.suffix)
        state: dict[str, Any] = {}
        ticker = _Estimate(self.rates, total, expect_cached, request.on_progress)
        t0 = time.perf_counter()
        first = 0.0
        try:
            for chunk in stream_chunks(server, self.completions_path, self.body(request), request.cancel):
                text, finished = self.parse(chunk, state)
                if (text or state.get("stop")) and not first:
                    first = time.perf_counter()
                    ticker.read(first - t0)
                if text and request.max_tokens:
                    for kind, piece in split.feed(text):
                        if request.on_token:
                            streamed[0] = True
                            request.on_token(kind, piece)
                if finished:
                    break
        finally:
            ticker.stop()
        if "stop" not in state:
            raise RemoteStreamCut(f"The stream from {server.url} ended before the answer did.")
        for kind, piece in split.flush():
            if request.on_token:
                request.on_token(kind, piece)
        cached = min(self.cached(state), total)
        prefill_s = (first or time.perf_counter()) - t0
        if total - cached > 0:
            self.rates.add(total - cached, prefill_s)
        usage = state.get("usage") or {}
        return Generation(
            text=split.answer.strip(), thinking=split.thinking.strip(), prompt_tokens=total, cached_tokens=cached,
            prefill_tokens=total - cached, prefill_s=prefill_s, generate_s=time.perf_counter() - (first or t0),
            generated_tokens=int(usage.get("completion_tokens") or 0),
            prefix_source="cached" if cached else "evaluated", stop_reason=state["stop"],
            thinking_open=split.in_thinking,
        )

    def abilities(self) -> dict[str, Any]:
        """What /api/health says this engine can and cannot do."""
        return {"engine": self.kind, "progress": "estimated" if not self.progress else "reported",
                "save_restore": self.snapshots, "cached_token_counts": self.cached_counts,
                "prefix_reuse": "the server's own prefix cache; docqa routes a document set to the server that "
                                "last read it", "reading_rate": self.rates.describe()}


class _Estimate:
    """Estimated reading progress while the server reads (it reports none), until the first token."""

    def __init__(self, rates: RecentRates, total: int, cached: int, sink: Any) -> None:
        self.rates, self.total, self.cached, self.sink = rates, total, min(cached, total), sink
        self._done = threading.Event()
        self._t0 = time.perf_counter()
        if sink is not None:
            self._emit()
            threading.Thread(target=self._tick, daemon=True, name="remote-estimate").start()

    def _event(self) -> dict[str, Any]:
        to_read = self.total - self.cached
        rate = self.rates.rate(to_read)
        base = {"tokens_total": self.total, "tokens_cached": self.cached, "estimated": True, "source": "estimate",
                "basis": self.rates.basis(to_read)}
        if rate is None:
            return {**base, "tokens_done": None, "tokens_per_s": None, "eta_s": None}
        elapsed = time.perf_counter() - self._t0
        done = min(self.total - 1, self.cached + int(rate * elapsed)) if to_read else self.total
        return {**base, "tokens_done": done, "tokens_per_s": round(rate, 1),
                "eta_s": round(max(0.0, to_read / rate - elapsed), 1)}

    def _emit(self) -> None:
        self.sink(self._event())

    def _tick(self) -> None:
        while not self._done.wait(TICK_S):
            self._emit()

    def read(self, seconds: float) -> None:
        """The first token came: the reading is over (exact now)."""
        if self._done.is_set():
            return
        self._done.set()
        if self.sink is not None:
            self.sink({"tokens_done": self.total, "tokens_total": self.total, "tokens_cached": self.cached,
                       "tokens_per_s": round((self.total - self.cached) / seconds, 1) if seconds else None,
                       "eta_s": 0, "estimated": False, "source": "first_token"})

    def stop(self) -> None:
        self._done.set()


def sse_lines(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """`data:` lines as JSON (for parsing tests of recorded streams)."""
    import json

    for line in lines:
        if line.startswith("data:") and (data := line[5:].strip()) and data != "[DONE]":
            yield json.loads(data)
