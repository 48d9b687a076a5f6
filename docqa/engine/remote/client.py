"""A remote model's servers and how docqa talks to them: each `Server` (its kind, contexts and slots, probed
and taken out of rotation when it fails), the HTTP errors as sentences, and the streamed answer
(server-sent events, a cancelled question closing the stream so the server stops, the thinking split).
The remote backend (this package's __init__) and each engine's dialect (openai_compat, vllm, sglang) use it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from docqa.errors import Cancelled, RemoteRefused
from docqa.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per tokenize call otherwise; failures are ours

LLAMA_SERVER = "llama-server"
CONNECT_S = 5.0
PROBE_TIMEOUT_S = 5.0




def is_url(where: str) -> bool:
    return where.startswith(("http://", "https://"))


def api_keys(settings: Settings) -> dict[str, str]:
    """URL → key from DOCQA_REMOTE_API_KEYS ("*" → a key for every server)."""
    raw = settings.remote_api_keys.get_secret_value() if settings.remote_api_keys else ""
    keys: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        url, sep, key = entry.rpartition("=")
        if sep and is_url(url):
            keys[url.rstrip("/")] = key
        else:
            keys["*"] = entry
    return keys


class _FreshOnStale(httpx.HTTPTransport):
    """Sends a request once more, on a new connection, when the kept-alive connection the pool gave it
    turns out closed by the server before any response came (llama-server's HTTP library ends a
    keep-alive connection after 5 idle seconds or 100 requests, and one may close just as it is reused).
    Nothing had reached the server's model then; a failure after the response began is not retried."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.RemoteProtocolError:
            return super().handle_request(request)


class Unusable(Exception):
    """The server answers but docqa cannot use it; the message says what to add or change."""


class Server:
    """One server: what it said of itself when last probed, whether it is in rotation, its load."""

    def __init__(self, url: str, key: str | None, timeout_s: float, probe_s: float) -> None:
        self.url = url
        self._key = key  # sent as a Bearer token; never logged, never in repr or health
        self.timeout_s = timeout_s
        self.probe_s = probe_s
        self.lock = threading.Lock()
        self.state = "unknown"  # unknown | up | down | unsupported
        self.kind: str | None = None
        self.error: str | None = None
        self.props: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.n_ctx = 0  # per slot
        self.slots = 1
        self.in_flight = 0
        self.probed_at = 0.0
        self.slot_holds: dict[int, str] = {}  # slot → the prefix hash it last read
        self.slot_used: dict[int, float] = {}
        self.busy: set[int] = set()
        self.slot_save: bool | None = None  # started with --slot-save-path (probed)
        self.snapshots = {"saved": 0, "restored": 0, "save_ms": 0.0, "restore_ms": 0.0, "bytes": 0}
        self._http: httpx.Client | None = None
        # not llama-server: the engine's dialect (openai_compat.py), made from `dialects` by the kind it says
        self.dialects: dict[str, Any] = {}
        self.tokenizer: Path | None = None  # for a server without /tokenize (DOCQA_MODELS URL#tokenizer=PATH)
        self.dialect: Any = None

    def __repr__(self) -> str:
        return f"Server({self.url!r}, {self.state})"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    @property
    def http(self) -> httpx.Client:
        """One pooled client per server, shared by every thread: keep-alive connections, so a follow-up
        question costs no TCP set-up, and no new client (an SSL context and its CA bundle, ~40-80 ms here)
        per request. A connection the server closed is dropped by the pool, or retried once (_FreshOnStale)."""
        with self.lock:
            if self._http is None:
                transport = _FreshOnStale(limits=httpx.Limits(max_keepalive_connections=16))
                self._http = httpx.Client(base_url=self.url, headers=self.headers(), timeout=self.timeout(),
                                          transport=transport)
            return self._http

    def timeout(self, read_s: float | None = None) -> httpx.Timeout:
        return httpx.Timeout(read_s or self.timeout_s, connect=CONNECT_S)

    def close(self) -> None:
        with self.lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    # -- what it is -----------------------------------------------------------------------------------

    def probe(self) -> None:
        """Ask the server what it is and what it serves; in rotation if it answered as llama-server."""
        self.probed_at = time.monotonic()
        try:
            c, t = self.http, self.timeout(PROBE_TIMEOUT_S)
            r = c.get("/props", timeout=t)
            props = r.json() if r.status_code == 200 else {}
            if isinstance(props, dict) and "default_generation_settings" in props:
                models = c.get("/v1/models", timeout=t)
                data = models.json().get("data", []) if models.status_code == 200 else []
                self.props, self.kind = props, LLAMA_SERVER
                self.meta = (data[0].get("meta") or {}) if data else {}
                self.n_ctx = int(props["default_generation_settings"].get("n_ctx") or 0)
                self.slots = max(1, int(props.get("total_slots") or 1))
                self.slot_save = self._probe_slot_save(c, t)
                self.state, self.error = "up", None
                return
            self.kind = self._other_kind(c, t)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self.mark_down(_what(exc))
            return
        if r.status_code in (401, 403):
            self.mark_down(f"it refused docqa's API key (HTTP {r.status_code}); check DOCQA_REMOTE_API_KEYS")
            return
        if self.kind in self.dialects:
            self._probe_dialect(c, t)
            return
        self.state = "unsupported"
        self.error = (f"it is {self.kind}, not llama-server: docqa answers through llama-server only so far "
                      "(nothing else was tested here)")

    def _probe_dialect(self, c: httpx.Client, t: httpx.Timeout) -> None:
        """In rotation through its engine's dialect, or unsupported with the dialect's sentence."""
        dialect = self.dialects[str(self.kind)](self, self.tokenizer)
        try:
            dialect.probe(c, t)
        except Unusable as exc:
            self.state, self.error, self.dialect = "unsupported", str(exc), None
            return
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self.mark_down(_what(exc))
            return
        self.dialect, self.slot_save = dialect, None
        self.state, self.error = "up", None

    @staticmethod
    def _probe_slot_save(c: httpx.Client, t: httpx.Timeout) -> bool:
        """Whether it keeps slot files (`--slot-save-path`): an invalid name is refused with 400 there, 501
        without; nothing is written either way."""
        r = c.post("/slots/0?action=save", json={"filename": "../docqa-probe"}, timeout=t)
        return r.status_code == 400

    # -- prefix states on the server's disk (llama-server's slot files) --------------------------------

    def save_slot(self, slot: int, filename: str) -> None:
        try:
            r = self.http.post(f"/slots/{slot}?action=save", json={"filename": filename})
            if r.status_code == 200:
                body = r.json()
                with self.lock:
                    self.snapshots["saved"] += 1
                    self.snapshots["save_ms"] += float(body.get("timings", {}).get("save_ms", 0.0))
                    self.snapshots["bytes"] += int(body.get("n_written", 0))
            else:
                log.warning("remote server %s could not save slot %d: HTTP %d", self.url, slot, r.status_code)
        except httpx.HTTPError as exc:
            log.warning("remote server %s could not save slot %d: %s", self.url, slot, _what(exc))

    def slot_kept(self, slot: int) -> bool:
        """Whether `slot` still holds a prompt: a server restarted since its last answer holds none. (Asked
        only of servers keeping slot files, where a lost prefix can be read back instead of re-read.)"""
        try:
            slots = self.http.get("/slots", timeout=self.timeout(PROBE_TIMEOUT_S)).json()
            return any(x.get("id") == slot and x.get("n_prompt_tokens") for x in slots)
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def restore_slot(self, slot: int, filename: str) -> int:
        """Tokens read back into `slot` from `filename` (0: none, e.g. never saved here)."""
        try:
            r = self.http.post(f"/slots/{slot}?action=restore", json={"filename": filename})
        except httpx.HTTPError:
            return 0
        if r.status_code != 200:
            return 0
        body = r.json()
        with self.lock:
            self.snapshots["restored"] += 1
            self.snapshots["restore_ms"] += float(body.get("timings", {}).get("restore_ms", 0.0))
        return int(body.get("n_restored", 0))

    def _other_kind(self, c: httpx.Client, t: httpx.Timeout) -> str:
        for path in ("/v1/models", "/models"):
            try:
                r = c.get(path, timeout=t)
                data = r.json().get("data", []) if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            if data is not None:
                owner = str((data[0] if data else {}).get("owned_by", "")).lower()
                return {"vllm": "vLLM", "sglang": "SGLang"}.get(owner, "a generic OpenAI-compatible server")
        return "not an OpenAI-compatible server"

    def mark_down(self, why: str) -> None:
        with self.lock:
            if self.state != "down":
                log.warning("remote server %s out of rotation: %s", self.url, why)
            self.state, self.error, self.probed_at = "down", why, time.monotonic()

    def usable(self) -> bool:
        """In rotation, or out of it long enough to be probed again (and answering now)."""
        if self.state in ("unknown",) or (self.state == "down" and time.monotonic() - self.probed_at >= self.probe_s):
            was = self.state
            self.probe()
            if was == "down" and self.state == "up":
                log.info("remote server %s back in rotation", self.url)
                with self.lock:
                    self.slot_holds.clear()  # restarted, most likely: its slots hold nothing
        return self.state == "up"

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "state": self.state, "kind": self.kind, "n_ctx": self.n_ctx or None,
                "total_slots": self.slots if self.kind == LLAMA_SERVER else None, "in_flight": self.in_flight,
                "model": Path(str(self.props.get("model_path") or "")).name or None, "error": self.error,
                "slot_save": self.slot_save, "snapshots": dict(self.snapshots) if self.slot_save else None,
                **({"engine": self.dialect.abilities()} if self.dialect is not None else {})}

    # -- tokens ---------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        if self.dialect is not None:
            return list(self.dialect.tokenize(text, special=special, add_bos=add_bos))
        r = self.http.post("/tokenize", json={"content": text, "add_special": add_bos, "parse_special": special})
        _raise_for(self, r)
        return [int(t) for t in r.json()["tokens"]]


def _what(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "it refused the connection or cannot be reached"
    if isinstance(exc, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "it closed the connection mid-answer"
    return f"{type(exc).__name__}: {exc}"


def _raise_for(server: Server, r: httpx.Response) -> None:
    if r.status_code < 400:
        return
    try:
        body = r.json()
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
        message = message or body.get("detail") or r.text
    except ValueError:
        message = r.text
    raise RemoteRefused(f"The server {server.url} refused the request (HTTP {r.status_code}): “{str(message)[:500]}”",
                        upstream_status=r.status_code, server=server.url)


class ThinkingSplit:
    """Streamed text split at `</think>` into thinking and answer (the tag may arrive in pieces)."""

    TAG = "</think>"

    def __init__(self, in_thinking: bool) -> None:
        self.in_thinking = in_thinking
        self.thinking = ""
        self.answer = ""
        self._held = ""

    def feed(self, text: str) -> Iterator[tuple[str, str]]:
        if not self.in_thinking:
            if text.lstrip().startswith("<think>") and not self.answer:
                self.in_thinking, text = True, text.lstrip()[len("<think>"):]
            else:
                self.answer += text
                yield "token", text
                return
        buf = self._held + text
        if self.TAG in buf:
            before, _, after = buf.partition(self.TAG)
            self._held, self.in_thinking = "", False
            if before:
                self.thinking += before
                yield "thinking", before
            if after:
                self.answer += after.lstrip("\n")
                yield "token", after.lstrip("\n")
            return
        keep = next((n for n in range(len(self.TAG) - 1, 0, -1) if buf.endswith(self.TAG[:n])), 0)
        out, self._held = (buf[:-keep], buf[-keep:]) if keep else (buf, "")
        if out:
            self.thinking += out
            yield "thinking", out

    def flush(self) -> Iterator[tuple[str, str]]:
        if self._held:
            self.thinking += self._held
            yield "thinking", self._held
            self._held = ""


class _CloseOnCancel:
    """Closes the upstream response when the question is cancelled, even mid-prefill with no bytes coming."""

    def __init__(self, cancel: threading.Event, response: httpx.Response) -> None:
        self._done = threading.Event()
        self._cancel, self._response = cancel, response
        threading.Thread(target=self._watch, daemon=True, name="remote-cancel").start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            if self._cancel.is_set():
                self._response.close()
                return

    def stop(self) -> None:
        self._done.set()


def stream_chunks(server: Server, path: str, body: dict[str, Any], cancel: threading.Event) -> Iterator[dict[str, Any]]:
    """The JSON events of a streamed POST, any engine: an HTTP error status is refused (502 quoting the server),
    an `error` event stops the answer (502), and a cancelled question closes the stream (the server aborts)."""
    with server.http.stream("POST", path, json=body) as r:
        if r.status_code >= 400:
            r.read()
            _raise_for(server, r)
        watcher = _CloseOnCancel(cancel, r)
        try:
            for chunk in _sse(r):
                if cancel.is_set():
                    raise Cancelled("The question was cancelled; the server was told to stop.")
                error = chunk.get("error", chunk if chunk.get("object") == "error" else None)
                if error is not None:
                    message = error.get("message") if isinstance(error, dict) else error
                    raise RemoteRefused(f"The server {server.url} stopped the answer: “{message}”", server=server.url)
                yield chunk
        except httpx.HTTPError:
            if cancel.is_set():
                raise Cancelled("The question was cancelled; the server was told to stop.") from None
            raise
        finally:
            watcher.stop()


def _sse(r: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in r.iter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]":
                yield json.loads(data)
        elif line.startswith("error:"):
            yield {"error": line[6:].strip()}
