"""Remote models: one model name served by one or more llama-server instances.

`DOCQA_MODELS='big=http://gpu-1:8080,big=http://gpu-2:8080'` makes `big` a `RemoteSpec` with two
`Server`s; its backend, `RemoteBackend`, implements the seam (backend.py) over HTTP:

- kind: each server is asked what it is (`GET /props` answers only on llama-server; `/v1/models`'
  `owned_by` names vLLM or SGLang; anything else is a generic OpenAI-compatible server). Only
  llama-server is answered through: the others are listed with that sentence (nothing else was run
  here, so nothing else is claimed);
- contexts: `/props`' `default_generation_settings.n_ctx` is the context of one slot (what one
  question gets), `total_slots` how many run at once; `/v1/models`' `meta.n_ctx_train` the trained one;
- tokens: the chat template, BOS and EOS come from `/props`, so the engine renders the prompt as for
  a local model, and each piece is tokenized by the server's own `POST /tokenize` (`parse_special`
  only for the template's own text): counts are exact and the documents' prefix is the same token
  list every time, which is what llama-server's `cache_prompt` reuses;
- answering: `POST /completion` with those tokens, `cache_prompt`, a pinned `id_slot` per document
  set, `return_progress` (its `prompt_progress` becomes docqa's `progress` events) and `stream`;
  the thinking split is the `</think>` tag (the raw completion endpoint does not split it);
  `cached_tokens` is the server's own `timings.cache_n`;
- routing: a document set goes to the slot that last read its prefix (prefix affinity), otherwise
  to the least loaded server's least recently used slot. A server that fails (refused connection,
  timeout, cut stream) is out of rotation and probed again every DOCQA_REMOTE_PROBE_S; its question
  is retried once on another server, unless tokens were already streamed to the client, and the
  answer's notes say so. A cancelled question closes the upstream stream, so the server stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from docqa.engine.backend import (
    CLASSES,
    Capabilities,
    Generation,
    Kind,
    Pieces,
    PlanNeeds,
    PrefixRead,
    Request,
    Resources,
    Ticket,
)
from docqa.engine.budget import ContextBudgetExceeded, Plan, ServedContext, Step, pad_ctx
from docqa.engine.remote.client import Server, ThinkingSplit, _what, api_keys, is_url, stream_chunks
from docqa.engine.sampling import Sampling, chat_preset
from docqa.engine.template import ChatTemplate, TokenCache
from docqa.errors import Cancelled, QueueFull, RemoteStreamCut, RemoteUnavailable
from docqa.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per tokenize call otherwise; failures are ours

CHUNK_MARGIN = 256  # tokens of a chunk kept for markers and document tags (as budget.py does)


def request_hash(request: Request) -> str:
    return hashlib.sha256(json.dumps(request.prefix).encode()).hexdigest()


@dataclass
class RemoteSpec:
    """A remote model: its name and servers. Described from the first server that answers."""

    name: str
    urls: list[str]
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    dialects: dict[str, Any] = field(default_factory=dict, repr=False)  # kind → dialect class (dialects.py)
    servers: list[Server] = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.servers = [Server(u, self.keys.get(u, self.keys.get("*")), s.remote_timeout_s, s.remote_probe_s)
                        for u in dict.fromkeys(u.partition("#")[0] for u in self.urls)]
        tokenizers = {u.partition("#")[0]: u.partition("#tokenizer=")[2] for u in self.urls if "#tokenizer=" in u}
        for server in self.servers:
            server.dialects = self.dialects
            server.tokenizer = Path(tokenizers[server.url]).expanduser() if server.url in tokenizers else None

    @property
    def path(self) -> Path:
        return Path(self.name)  # nothing on disk; web/ strips paths from sentences, there are none here

    @property
    def identity(self) -> str:
        """The served model (its file name, vocabulary and size as the servers report them), not a server."""
        props = self._props()
        meta = next((s.meta for s in self.servers if s.meta), {})
        seed = f"remote:{Path(str(props.get('model_path', ''))).name}:{meta.get('n_vocab')}:{meta.get('size')}"
        return hashlib.sha256(seed.encode()).hexdigest()

    def _props(self) -> dict[str, Any]:
        for s in self.servers:
            if s.props:
                return s.props
        for s in self.servers:
            if s.usable():
                return s.props
        return {}

    @property
    def family(self) -> str:
        props = self._props()
        template = str(props.get("chat_template") or "")
        if "thinking" in str(props.get("model_path", "")).lower():
            return "thinking"
        if "<think>" in template and "enable_thinking" in template:
            return "hybrid"
        return "instruct"

    @property
    def vendor(self) -> str:
        return "qwen" if "qwen" in str(self._props().get("model_path", "")).lower() else "default"

    @property
    def preset(self) -> dict[str, float]:
        return chat_preset(self.family)

    def up(self) -> list[Server]:
        return [s for s in self.servers if s.usable()]

    def problem(self) -> str | None:
        if self.up():
            return None
        return "no server of it can be used: " + "; ".join(f"{s.url}: {s.error}" for s in self.servers)

    def require(self) -> RemoteSpec:
        problem = self.problem()
        if problem:
            raise RemoteUnavailable(f"The model {self.name!r} cannot be used: {problem}.")
        return self

    def describe(self) -> dict[str, Any]:
        problem = self.problem()
        up = [s for s in self.servers if s.state == "up"]
        first = up[0] if up else None
        out: dict[str, Any] = {"name": self.name, "path": self.name, "error": problem, "backend": "remote",
                               "servers": [s.describe() for s in self.servers]}
        if first is not None:
            out.update(kind=first.kind, n_ctx=min(s.n_ctx for s in up), n_ctx_train=first.meta.get("n_ctx_train"),
                       n_vocab=first.meta.get("n_vocab"), size_bytes=first.meta.get("size"), family=self.family,
                       sampling=self.preset, parameters=first.meta.get("n_params"), embedded=False,
                       display_name=Path(str(first.props.get("model_path") or self.name)).stem)
        return out

    def open(self, settings: Settings) -> RemoteBackend:
        return RemoteBackend(self, settings)


def _spec(name: str, urls: list[str], settings: Settings) -> RemoteSpec:
    """DOCQA_MODELS's NAME=URL: a name given several URLs is one model on several servers."""
    from docqa.engine.remote.dialects import DIALECTS  # vLLM, SGLang, other OpenAI-compatible servers (dialects.py)

    return RemoteSpec(name, [u.rstrip("/") for u in urls], settings, api_keys(settings), dialects=DIALECTS)


KIND = Kind(name="remote", claims=is_url, spec=_spec)


class RemoteBackend:

    def __init__(self, spec: RemoteSpec, settings: Settings) -> None:
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self._lock = threading.Condition()
        self._places = dict.fromkeys(CLASSES, 0)  # tickets held per priority class
        self._template: ChatTemplate | None = None
        self._tokens: TokenCache[tuple[str, bool, bool]] = TokenCache()
        self._read_ahead: dict[str, int] = {}  # prefix hash -> tokens a read-ahead had a server read

    @property
    def capabilities(self) -> Capabilities:
        """Snapshots where every server in rotation keeps slot files (a question may go to any of them)."""
        up = [s for s in self.spec.servers if s.state == "up"]
        snapshots = bool(up) and all(s.slot_save for s in up)
        progress = all(s.dialect is None or s.dialect.progress for s in up)  # otherwise estimated (openai_compat.py)
        return Capabilities(kv_budget=False, prefix_cache=True, state_snapshots=snapshots, progress=progress)

    @property
    def identity(self) -> str:
        return self.spec.identity

    @property
    def n_ctx_train(self) -> int | None:
        meta = next((s.meta for s in self.spec.servers if s.meta), {})
        return int(meta["n_ctx_train"]) if meta.get("n_ctx_train") else None

    @property
    def served_ctx(self) -> int | None:
        """The smallest slot context of the servers in rotation: a question may fail over to any of them."""
        up = self.spec.up()
        return min(s.n_ctx for s in up) if up else None

    # -- tokens -------------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        if self._template is None and (dialect := next((s.dialect for s in self.spec.up() if s.dialect), None)):
            self._template = dialect.template()
        if self._template is None:
            props = self.spec.require()._props()
            self._template = ChatTemplate(props.get("chat_template") or None, str(props.get("bos_token") or ""),
                                          str(props.get("eos_token") or ""))
        return self._template

    def _tokenizer(self) -> Server:
        up = self.spec.up()
        if not up:
            self.spec.require()
        return min(up, key=lambda s: s.in_flight)

    def tokenize(self, pieces: Pieces, *, add_bos: bool) -> list[int]:
        bos_text = self.template().bos_text
        tokens: list[int] = []
        for i, (text, trusted) in enumerate(pieces):
            bos = i == 0 and add_bos and not (bos_text and text.startswith(bos_text))
            tokens += self._tokenized(text, trusted, bos)
        return tokens

    def count(self, text: str) -> int:
        return len(self._tokenized(text, False, False))

    def _tokenized(self, text: str, special: bool, add_bos: bool) -> list[int]:
        """The server's tokens of `text`, asked once: the documents' piece and the template's own text are
        the same for every question of a session (a follow-up then sends only its question to /tokenize)."""
        key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), special, add_bos)
        found = self._tokens.get(key)
        if found is None:
            found = self._call(lambda s: s.tokenize(text, special=special, add_bos=add_bos))
            self._tokens.put(key, found)
        return list(found)

    def _call(self, fn: Any) -> Any:
        """A short request (tokenize) on a server in rotation, the next one if it fails."""
        for _ in range(len(self.spec.servers)):
            server = self._tokenizer()
            try:
                return fn(server)
            except httpx.HTTPError as exc:
                server.mark_down(_what(exc))
        raise self._unavailable()

    def _unavailable(self) -> RemoteUnavailable:
        return RemoteUnavailable(
            f"The model {self.name!r} cannot be used: no server answers ("
            + "; ".join(f"{s.url}: {s.error or s.state}" for s in self.spec.servers) + ").")

    # -- planning -----------------------------------------------------------------------------------

    def plan(self, needs: PlanNeeds) -> Plan:
        """Whole when the documents fit one slot's served context, else chunks of at most that context.
        The plan is explained in those terms: there are no KV bytes to count on someone else's server."""
        served = self.served_ctx
        if served is None:
            raise self._unavailable()
        where = ", ".join(s.url for s in self.spec.up())
        need = needs.prompt_tokens + needs.question_tokens + needs.history_tokens + needs.answer_tokens
        said = f"served context {served:,} tokens on {where}; the documents need {need:,}"
        steps = [Step("whole", need, "server", "server", None, 0, need <= served,
                      "" if need <= served else f"needs {need:,} tokens of a {served:,}-token context")]
        if needs.forced_mode != "chunked" and need <= served:
            return self._plan(needs, "whole", f"{said} → whole", served, steps)
        if needs.forced_mode == "whole":
            raise ContextBudgetExceeded(
                f"The whole document set cannot be read in one context: it needs {need:,} tokens and the model "
                f"{self.name!r} serves {served:,} per question ({where}). Use chunked mode.",
                needed_tokens=need, served_ctx=served,
            )
        chunk_ctx = min(pad_ctx(needs.chunk_ctx), served)
        history = min(needs.history_tokens, chunk_ctx // 8)
        content = chunk_ctx - needs.question_tokens - history - needs.answer_tokens - CHUNK_MARGIN
        if content < 256:
            raise ContextBudgetExceeded(
                f"A {chunk_ctx:,}-token chunk (the context {where} serves) leaves no room for the documents once the "
                f"question ({needs.question_tokens}) and answer ({needs.answer_tokens}) budgets are reserved.")
        steps.append(Step("chunked", chunk_ctx, "server", "server", None, 0, True))
        why = "chunked by request" if needs.forced_mode == "chunked" else "chunked"
        plan = self._plan(needs, "chunked", f"{said} → {why} into {{n_chunks}} chunks of ≤ {chunk_ctx:,}",
                          chunk_ctx, steps, history)
        plan.chunk_ctx = chunk_ctx
        plan.n_chunks = max(1, -(-needs.prompt_tokens // content))
        return plan

    def _plan(self, needs: PlanNeeds, mode: str, reason: str, n_ctx: int, steps: list[Step],
              history: int | None = None) -> Plan:
        return Plan(
            mode=mode, reason=reason, model=needs.model_name, prompt_tokens=needs.prompt_tokens,
            question_tokens=needs.question_tokens, answer_tokens=needs.answer_tokens, n_ctx=n_ctx,
            n_ctx_train=self.n_ctx_train or n_ctx, steps=steps,
            history_tokens=needs.history_tokens if history is None else history,
            served=ServedContext(self.served_ctx or n_ctx, [s.url for s in self.spec.up()]),
        )

    def degrade(self, plan: Plan) -> Plan | None:
        return None

    def holds(self, plan: Plan, n_ctx: int, prefix: list[int], *, yarn: bool = True) -> bool:
        """Whether a slot of a server in rotation last read this prefix (a question or a read-ahead)."""
        prefix_hash = _prefix_hash(prefix)
        for server in self.spec.servers:
            with server.lock:
                if server.state == "up" and prefix_hash in server.slot_holds.values():
                    return True
        return False

    def resources(self) -> Resources:
        return Resources(memory=None, resident_bytes=0)  # the servers' memory is their own

    # -- running ------------------------------------------------------------------------------------

    @property
    def _pending(self) -> int:
        """Tickets counted against the queue bound: interactive questions and batch items."""
        return self._places["interactive"] + self._places["batch"]

    def reserve(self, klass: str = "interactive", principal: str = "") -> Ticket:
        """A ticket in priority class `klass`, counted as the local runtime counts them: the bound (every
        slot of the servers in rotation plus DOCQA_QUEUE_SIZE waiting) counts interactive and batch
        tickets; a question is refused only when its own class and those above it fill it, a batch item
        when both classes do; a read-ahead is never refused nor counted (and waits for the others,
        `read_ahead`). The servers have no priorities of their own."""
        if klass not in CLASSES:
            raise ValueError(f"unknown priority class {klass!r}")
        self.spec.require()
        capacity = sum(s.slots for s in self.spec.servers if s.state == "up") + self.settings.queue_size
        with self._lock:
            ahead = sum(self._places[c] for c in CLASSES[: CLASSES.index(klass) + 1])
            if klass != "read_ahead" and ahead >= capacity:
                raise QueueFull(
                    f"The model {self.name!r} is busy: every slot of its servers is answering and "
                    f"{self.settings.queue_size} questions are waiting, as many as DOCQA_QUEUE_SIZE allows; "
                    "try again in about 10 seconds.", retry_after=10, queue_size=self.settings.queue_size,
                    priority=klass)
            self._places[klass] += 1
        return Ticket(klass, principal, lambda: self._give_back(klass))

    def _give_back(self, klass: str) -> None:
        with self._lock:
            self._places[klass] -= 1
            self._lock.notify_all()

    def read_ahead(self, read: PrefixRead, ticket: Ticket) -> int:
        """llama-server reads a prompt into a slot's cache when asked for no tokens (`n_predict: 0`,
        `cache_prompt`): the first `read.limit` tokens of the prefix are sent, and the slot is recorded as
        holding the whole prefix, so the question is routed to it (prefix affinity) and the server reuses
        the common part. The servers have no priorities: a read-ahead waits until no question or batch
        item holds a ticket, then holds its slot until read."""
        with self._lock:
            while self._pending and not read.cancel.is_set():
                self._lock.wait(0.2)
        if read.cancel.is_set():
            raise Cancelled("The read-ahead was stopped before it started.")
        limit = read.limit if 0 < read.limit < len(read.prefix) else len(read.prefix)
        request = Request(plan=read.plan, n_ctx=read.n_ctx, prefix=read.prefix[:limit], suffix=[], max_tokens=0,
                          sampling=Sampling(temperature=0.0), cancel=read.cancel, on_progress=read.on_progress)
        self._serve(request, _prefix_hash(read.prefix), read_ahead=True)
        return limit

    def _route(self, prefix_hash: str, avoid: set[str]) -> tuple[Server, int]:
        """The slot that holds this prefix (free), else the least loaded server's least recently used slot."""
        up = [s for s in self.spec.up() if s.url not in avoid]
        if not up:
            raise self._unavailable()
        for s in up:
            with s.lock:
                for slot, held in s.slot_holds.items():
                    if held == prefix_hash and slot not in s.busy:
                        s.busy.add(slot)
                        s.in_flight += 1
                        return s, slot
                    if held == prefix_hash and s.dialect is not None and not s.in_flight:
                        s.in_flight += 1  # one cache for the whole server, no slot to pin: back to it while it is free
                        return s, -1
        server = min(up, key=lambda s: (s.in_flight / s.slots, s.in_flight))
        with server.lock:
            free = [i for i in range(server.slots) if i not in server.busy] or list(range(server.slots))
            slot = min(free, key=lambda i: server.slot_used.get(i, 0.0))
            server.busy.add(slot)
            server.in_flight += 1
        return server, slot

    def generate(self, request: Request, ticket: Ticket) -> tuple[Generation, float]:
        return self._serve(request, _prefix_hash(request.prefix))

    def _serve(self, request: Request, prefix_hash: str, *, read_ahead: bool = False) -> tuple[Generation, float]:
        """Route to a slot (the one holding `prefix_hash` first), complete, retry once elsewhere."""
        failed: dict[str, str] = {}
        streamed = [False]
        t0 = time.perf_counter()
        while True:
            server, slot_id = self._route(prefix_hash, set(failed))
            queue_s = time.perf_counter() - t0
            filename = f"docqa-{self.identity[:16]}-{prefix_hash[:32]}.bin"
            restored = 0
            if server.slot_save and not (server.slot_holds.get(slot_id) == prefix_hash and server.slot_kept(slot_id)):
                restored = server.restore_slot(slot_id, filename)  # read before a restart, or by another slot
            try:
                gen = self._complete(server, slot_id, request, streamed)
            except (httpx.HTTPError, RemoteStreamCut) as exc:
                why = _what(exc) if isinstance(exc, httpx.HTTPError) else "its stream ended before the answer did"
                server.mark_down(why)
                failed[server.url] = why
                self._free(server, slot_id, None)
                if streamed[0]:
                    raise RemoteStreamCut(
                        f"The server {server.url} stopped mid-answer ({why}); nothing was stored. Ask again.",
                        server=server.url) from None
                if len(failed) > 1 or not [s for s in self.spec.up() if s.url not in failed]:
                    raise RemoteUnavailable(
                        f"The model {self.name!r} could not answer: "
                        + "; ".join(f"{u} {w}" for u, w in failed.items()) + ". Nothing was stored.") from None
                continue
            except BaseException:
                self._free(server, slot_id, None)
                raise
            self._free(server, slot_id, prefix_hash)
            if read_ahead:  # the server read the prefix (or its first tokens) into this slot's cache
                with self._lock:
                    self._read_ahead[prefix_hash] = len(request.prefix)
            elif (ahead := self._take_read_ahead(prefix_hash)) and gen.cached_tokens:
                gen.prefix_source, gen.read_ahead_tokens = "read-ahead", min(ahead, gen.cached_tokens)
            if restored and gen.cached_tokens:
                gen.prefix_source = "restored"
            elif server.slot_save and gen.cached_tokens < len(request.prefix):  # read now: keep it for later
                threading.Thread(target=server.save_slot, args=(slot_id, filename), daemon=True,
                                 name="remote-slot-save").start()
            if failed:
                gen.notes.append("Retried on " + server.url + " after " + "; ".join(
                    f"{u} failed ({w})" for u, w in failed.items()) + ".")
            return gen, queue_s

    def _take_read_ahead(self, prefix_hash: str) -> int:
        """Tokens of this prefix a read-ahead had the server read (reported once, by the first question)."""
        with self._lock:
            return self._read_ahead.pop(prefix_hash, 0)

    def _free(self, server: Server, slot_id: int, prefix_hash: str | None) -> None:
        with server.lock:
            server.busy.discard(slot_id)
            server.in_flight -= 1
            server.slot_used[slot_id] = time.monotonic()
            if prefix_hash is None:
                server.slot_holds.pop(slot_id, None)
            else:
                server.slot_holds[slot_id] = prefix_hash

    def _complete(self, server: Server, slot_id: int, request: Request, streamed: list[bool]) -> Generation:
        if server.dialect is not None:
            with server.lock:  # the server last read this prefix: most of it should come from its cache
                expect = len(request.prefix) if request_hash(request) in server.slot_holds.values() else 0
            return server.dialect.complete(request, streamed, expect)  # type: ignore[no-any-return]
        s = request.sampling
        body: dict[str, Any] = {
            "prompt": request.prefix + request.suffix, "n_predict": request.max_tokens, "stream": True,
            "cache_prompt": True, "id_slot": slot_id, "return_progress": request.on_progress is not None,
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "presence_penalty": s.presence_penalty, "seed": s.seed if s.seed >= 0 else -1,
            "samplers": ["top_k", "top_p", "min_p", "temperature"],
        }
        split = ThinkingSplit(request.start_in_thinking)
        total = len(request.prefix) + len(request.suffix)
        final: dict[str, Any] = {}
        t0 = time.perf_counter()
        first_token = 0.0
        for chunk in stream_chunks(server, "/completion", body, request.cancel):
            if (p := chunk.get("prompt_progress")) and request.on_progress:
                request.on_progress(_progress(p))
            text = chunk.get("content") or ""
            if text:
                first_token = first_token or time.perf_counter()
                for kind, piece in split.feed(text):
                    if request.on_token:
                        streamed[0] = True
                        request.on_token(kind, piece)
            if chunk.get("stop"):
                final = chunk
                break
        if not final:
            raise RemoteStreamCut(f"The stream from {server.url} ended before the answer did.")
        for kind, piece in split.flush():
            if request.on_token:
                request.on_token(kind, piece)
        t = final.get("timings") or {}
        cached = int(t.get("cache_n", final.get("tokens_cached", 0)) or 0)
        prefill_s = float(t.get("prompt_ms", 0.0)) / 1000
        return Generation(
            text=split.answer.strip(), thinking=split.thinking.strip(), prompt_tokens=total, cached_tokens=cached,
            prefill_tokens=int(t.get("prompt_n", total - cached) or 0), prefill_s=prefill_s,
            generate_s=float(t.get("predicted_ms", 0.0)) / 1000 or (time.perf_counter() - (first_token or t0)),
            generated_tokens=int(t.get("predicted_n", 0) or 0), prefix_source="cached" if cached else "evaluated",
            stop_reason="length" if final.get("stop_type") == "limit" else "eos", thinking_open=split.in_thinking,
        )

    def health(self) -> dict[str, Any]:
        servers = []
        for s in self.spec.servers:
            s.usable()  # probes what is out of rotation and due
            servers.append(s.describe())
        up = [s for s in servers if s["state"] == "up"]
        running = sum(s["in_flight"] for s in servers)
        with self._lock:
            pending = self._pending
            places = dict(self._places)
        problem = None if up else self.spec.problem()
        return {
            "ready": bool(up), "error": problem, "backend": "remote",
            "state": "unavailable" if not up else ("busy" if pending else "idle"),
            "running": running, "waiting": max(0, pending - running), "queue_depth": pending,
            "queue_size": self.settings.queue_size, "loaded": bool(up), "servers": servers,
            "classes": {c: {"places": places[c]} for c in CLASSES},
            "capabilities": self.capabilities.to_dict(),
        }

    def warm(self) -> None:
        for server in self.spec.servers:
            server.usable()  # probes a server not asked yet

    def close(self) -> None:
        for server in self.spec.servers:
            server.close()


def _prefix_hash(prefix: list[int]) -> str:
    return hashlib.sha256(json.dumps(prefix).encode()).hexdigest()


def _progress(p: dict[str, Any]) -> dict[str, Any]:
    """llama-server's `prompt_progress` as docqa's progress event (tokens done / total, rate, ETA)."""
    total, cache, done = int(p.get("total", 0)), int(p.get("cache", 0)), int(p.get("processed", 0))
    elapsed = float(p.get("time_ms", 0.0)) / 1000
    rate = (done - cache) / elapsed if elapsed else 0.0
    return {"tokens_done": done, "tokens_total": total, "tokens_cached": cache, "tokens_per_s": round(rate, 1),
            "eta_s": round((total - done) / rate, 1) if rate else None, "source": "prompt_progress"}


__all__ = ["KIND", "RemoteBackend", "RemoteSpec", "Server", "ThinkingSplit", "api_keys", "is_url"]
