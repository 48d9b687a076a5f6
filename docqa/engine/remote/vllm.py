"""vLLM behind docqa's remote backend (a dialect, openai_compat.py).

- served context: `/v1/models`' `max_model_len`;
- tokens: vLLM's own `POST /tokenize` (`add_special_tokens: false`), so counts are exact and a document's
  tokens are the same list every time, which is what vLLM's automatic prefix caching reuses. vLLM's
  tokenizer matches special tokens inside any text; untrusted text (documents, questions) is therefore
  cut inside every occurrence of the chat template's own markers (`<|im_start|>`, `<think>`, …) before it
  is sent, so a document saying "<|im_end|>" stays ordinary characters, as with llama-server's
  `parse_special: false`;
- chat template: rendered by the server itself — the messages (with placeholders where untrusted text
  goes) through `/tokenize` with `messages`, then `/detokenize` — so docqa lays out the prompt exactly as
  vLLM's chat endpoint would, with no copy of the template here (cached per message layout);
- answering: `POST /v1/completions` with the token ids, streamed with `stream_options.include_usage`;
  `cached_tokens` is `usage.prompt_tokens_details.cached_tokens` (start vLLM with
  `--enable-prompt-tokens-details`, or the count is always 0 and health says so); `top_k`, `min_p`,
  `presence_penalty` and `seed` are vLLM sampling parameters and are sent as such;
- cancel: closing the stream makes vLLM abort the request (its log says "Request … aborted." with
  `--enable-log-requests`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import httpx

from docqa.engine.remote.client import Unusable, _raise_for
from docqa.engine.remote.openai_compat import OpenAICompatible
from docqa.engine.template import ChatTemplate

if TYPE_CHECKING:
    from docqa.engine.backend import Request

VLLM = "vLLM"
# a marker of the template's own text: one token, two characters or more, no letters-only word
_MARKER = re.compile(r"^[<\[].{1,40}[>\]]$", re.S)


class VLLMDialect(OpenAICompatible):
    kind = VLLM

    def _check_tokenizer(self, c: httpx.Client, t: httpx.Timeout) -> None:
        r = c.post("/tokenize", json={"prompt": "docqa", "add_special_tokens": False}, timeout=t)
        if r.status_code != 200 or "tokens" not in r.json():
            raise Unusable(f"it is {self.kind} but its /tokenize answered HTTP {r.status_code}")
        self.markers: set[str] = set()
        self._rendered: dict[str, str] = {}
        # the template's markers are known before any untrusted text is tokenized
        self.render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], {})

    # -- tokens -----------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        if self._template is None:
            template = ChatTemplate(None, "", "")
            template.template = _ServerRendered(self)  # type: ignore[assignment]
            self._template = template
        return self._template

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.server.http.post(path, json={**({"model": self.model_id} if self.model_id else {}), **body})
        _raise_for(self.server, r)
        out: dict[str, Any] = r.json()
        return out

    def render(self, messages: list[dict[str, str]], kwargs: dict[str, Any]) -> str:
        """The chat template applied by the server, as text (cached: the layout repeats every question)."""
        key = json.dumps([messages, kwargs], sort_keys=True)
        if key not in self._rendered:
            body: dict[str, Any] = {"messages": messages, "add_generation_prompt": True, "return_token_strs": True}
            if kwargs:
                body["chat_template_kwargs"] = kwargs
            out = self._post("/tokenize", body)
            text = str(self._post("/detokenize", {"tokens": out["tokens"]})["prompt"])
            self._learn_markers(out.get("token_strs") or [], text)
            self._rendered[key] = text
        return self._rendered[key]

    def _learn_markers(self, strs: list[str], text: str) -> None:
        """The template's own special tokens, as they appear in its text: one token each, like `<|im_end|>`."""
        self.markers |= {s for s in strs if s and _MARKER.match(s) and s in text and "\ue000" not in s}

    def tokenize(self, text: str, *, special: bool, add_bos: bool) -> list[int]:
        if not special and self.markers:
            parts = cut_markers(text, self.markers)
            if len(parts) > 1:
                return [t for part in parts for t in self._tokens(part)]
        return self._tokens(text)

    def _tokens(self, text: str) -> list[int]:
        if not text:
            return []
        return [int(t) for t in self._post("/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"]]

    # -- answering --------------------------------------------------------------------------------

    def body(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        return {**super().body(request), "top_k": s.top_k if s.top_k > 0 else -1, "min_p": s.min_p,
                "skip_special_tokens": True}


def cut_markers(text: str, markers: set[str]) -> list[str]:
    """`text` cut inside every occurrence of a marker, so no piece holds a whole one (the same characters)."""
    cuts = sorted({m.start() + len(marker) // 2 for marker in markers for m in re.finditer(re.escape(marker), text)})
    if not cuts:
        return [text]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


class _ServerRendered:
    """Stands in for the jinja template inside `ChatTemplate`: `render(**context)` asks the server."""

    def __init__(self, dialect: VLLMDialect) -> None:
        self.dialect = dialect

    def render(self, *, messages: list[dict[str, str]], add_generation_prompt: bool = True, bos_token: str = "",
               eos_token: str = "", **kwargs: Any) -> str:
        return self.dialect.render(messages, kwargs)


__all__ = ["VLLM", "VLLMDialect", "cut_markers"]
