"""SGLang behind docqa's remote backend (a dialect, openai_compat.py). Untested against a running server:
PyPI's `sglang` is a CUDA build (README: "SGLang: untested"); the parsing follows SGLang 0.5.23's own code
(`srt/entrypoints/http_server.py`, `srt/managers/tokenizer_manager.py`) and is unit-tested on its formats.

- tokens: `POST /tokenize` (`prompt`, `add_special_tokens: false`) → `{"tokens", "count", "max_model_len"}`;
  the chat template is rendered by the server as for vLLM (`/tokenize` with `messages`, `/detokenize`);
- answering: `POST /generate` with `input_ids`, `sampling_params` (`max_new_tokens`, `temperature`, `top_p`,
  `top_k`, `min_p`, `presence_penalty`, `sampling_seed`) and `stream: true`. Each `data:` line carries
  `text` — the whole text so far, unless the server runs with `--incremental-streaming-output`, where it
  is the new piece (both are handled: a text that extends the one before is cut to the new part) — and
  `meta_info` with `finish_reason` (null, or `{"type": "length" | "stop", …}`), `prompt_tokens`,
  `completion_tokens` and `cached_tokens` (RadixAttention's reused prefix);
- an `{"error": {"message": …}}` line is the server stopping the answer; closing the stream aborts the
  request there (`create_abort_task`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docqa.engine.remote.vllm import VLLMDialect

if TYPE_CHECKING:
    from docqa.engine.backend import Request

SGLANG = "SGLang"


class SGLangDialect(VLLMDialect):
    kind = SGLANG
    completions_path = "/generate"

    def body(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        params: dict[str, Any] = {"max_new_tokens": max(1, request.max_tokens), "temperature": s.temperature,
                                  "top_p": s.top_p, "top_k": s.top_k if s.top_k > 0 else -1, "min_p": s.min_p,
                                  "presence_penalty": s.presence_penalty}
        if s.seed >= 0:
            params["sampling_seed"] = s.seed
        return {"input_ids": request.prefix + request.suffix, "sampling_params": params, "stream": True}

    def parse(self, chunk: dict[str, Any], state: dict[str, Any]) -> tuple[str, bool]:
        meta = chunk.get("meta_info") or {}
        state["meta"] = meta
        text = chunk.get("text")
        new = ""
        if isinstance(text, str):
            seen = state.get("text", "")
            new = text[len(seen):] if text.startswith(seen) else text
            state["text"] = text if text.startswith(seen) else seen + text
        finish = meta.get("finish_reason")
        if finish:
            kind = finish.get("type") if isinstance(finish, dict) else str(finish)
            state["stop"] = "length" if kind == "length" else "eos"
            state["usage"] = {"completion_tokens": meta.get("completion_tokens"),
                              "prompt_tokens": meta.get("prompt_tokens")}
        return new, False

    def cached(self, state: dict[str, Any]) -> int:
        return int((state.get("meta") or {}).get("cached_tokens") or 0)
