"""Render a GGUF's chat template into trusted and untrusted pieces, then into tokens.

The template is rendered once with placeholder strings where untrusted content goes; the text
around them is the template's own (trusted: special tokens allowed), the content is tokenized
with special tokens disabled, user-defined ones included (see `tokenize_untrusted`). Token ids
are therefore the concatenation of per-piece tokenizations, which also keeps the document prefix
byte-identical across questions.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_SLOT = "\ue000docqa-slot-{}\ue000"


def _raise(message: str) -> None:
    raise ValueError(message)


@dataclass
class Rendered:
    """pieces: (text, trusted) in order."""

    pieces: list[tuple[str, bool]]


class ChatTemplate:
    def __init__(self, source: str | None, bos_text: str, eos_text: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))
        self.template = env.from_string(source or CHATML)
        self.bos_text = bos_text
        self.eos_text = eos_text

    def render(self, system: str, user_parts: list[str], *, enable_thinking: bool | None = None,
               turns: list[tuple[str, str]] | None = None) -> Rendered:
        """system is trusted; user_parts are untrusted and appear in order in one user message.

        With `turns` (earlier (question, answer) pairs, untrusted), the conversation is laid out as
        user: user_parts[0] + turns[0].question, assistant: turns[0].answer, ... and a last user
        message holding user_parts[1:]: the documents (user_parts[0]) stay first, so the token
        prefix up to their end is the same with or without history."""
        parts: list[str] = []
        messages: list[dict[str, str]] = [{"role": "system", "content": system}]

        def slots(texts: list[str]) -> str:
            start = len(parts)
            parts.extend(texts)
            return "".join(_SLOT.format(i) for i in range(start, len(parts)))

        if turns:
            for i, (question, answer) in enumerate(turns):
                messages.append({"role": "user", "content": slots([user_parts[0], question] if i == 0 else [question])})
                messages.append({"role": "assistant", "content": slots([answer])})
            messages.append({"role": "user", "content": slots(user_parts[1:])})
        else:
            messages.append({"role": "user", "content": slots(user_parts)})
        kwargs: dict[str, Any] = {}
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        text = self.template.render(
            messages=messages, add_generation_prompt=True, bos_token=self.bos_text, eos_token=self.eos_text, **kwargs,
        )
        pieces: list[tuple[str, bool]] = []
        rest = text
        for i, part in enumerate(parts):
            before, found, rest = rest.partition(_SLOT.format(i))
            if not found:
                raise ValueError("the chat template dropped the user's message")
            pieces += [(before, True), (part, False)]
        pieces.append((rest, True))
        return Rendered([(t, trusted) for t, trusted in pieces if t or not trusted])


def tokenize_pieces(vocab: Any, pieces: list[tuple[str, bool]], *, add_bos: bool, bos_text: str) -> list[int]:
    tokens: list[int] = []
    first = True
    for text, trusted in pieces:
        bos = first and add_bos and not text.startswith(bos_text or "\0")
        if trusted:
            tokens += vocab.tokenize(text.encode("utf-8"), add_bos=bos, special=True)
        else:
            tokens += tokenize_untrusted(vocab, text, add_bos=bos)
        first = False
    return tokens


def tokenize_untrusted(vocab: Any, text: str, *, add_bos: bool = False) -> list[int]:
    """Tokens of untrusted text, none of them a special token.

    `special=False` stops llama.cpp from parsing *control* tokens (`<|im_end|>`) in the text, but
    it still matches *user-defined* tokens there, as Hugging Face tokenizers do. Qwen3's `<think>`
    and `</think>` (151667, 151668) and its tool-call tags are user-defined, so a document saying
    "</think>" would become the real tag. Where such a token turns up, the text is cut inside each
    occurrence of it and the pieces are tokenized apart: the same characters, as ordinary tokens.
    """
    tokens = vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
    cuts: set[int] = set()
    for _ in range(16):
        forged = _special_texts(vocab, tokens)
        if not forged:
            return tokens
        new = {m.start() + len(t) // 2 for t in forged for m in re.finditer(re.escape(t), text)} - cuts
        if not new:
            break
        cuts |= new
        bounds = [0, *sorted(cuts), len(text)]
        tokens = []
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            tokens += vocab.tokenize(text[a:b].encode("utf-8"), add_bos=add_bos and i == 0, special=False)
    raise ValueError("untrusted text could not be tokenized without special tokens")


_SPECIAL_ATTRS = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED


def _special_texts(vocab: Any, tokens: list[int]) -> set[str]:
    """The texts (two characters or more: a cut can split those) of the control or user-defined
    tokens among `tokens`, BOS excepted."""
    vp = vocab._model.vocab
    bos = vocab.token_bos()
    out: set[str] = set()
    for t in set(tokens):
        if t != bos and llama_cpp.llama_vocab_get_attr(vp, t) & _SPECIAL_ATTRS:
            text = vocab.detokenize([t], special=True).decode("utf-8", "replace")
            if len(text) >= 2:
                out.add(text)
    return out


K = TypeVar("K", bound=Hashable)


class TokenCache(Generic[K]):
    """Recent tokenizations, bounded by their total tokens (a long document's are kept while it is asked
    about): what a backend keeps so a follow-up over the same documents tokenizes only its own suffix."""

    def __init__(self, max_tokens: int = 4_000_000) -> None:
        self.max_tokens = max_tokens
        self._items: OrderedDict[K, tuple[int, ...]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[int, ...] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: K, tokens: list[int]) -> None:
        if len(tokens) > self.max_tokens // 2:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = tuple(tokens)
            self._total += len(tokens)
            while self._total > self.max_tokens:
                _, dropped = self._items.popitem(last=False)
                self._total -= len(dropped)
