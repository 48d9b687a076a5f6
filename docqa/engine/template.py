"""Render a GGUF's chat template into trusted and untrusted pieces, then into tokens.

The template is rendered once with placeholder strings where untrusted content goes; the text
around them is the template's own (trusted: special tokens allowed), the content is tokenized
with special tokens disabled. Token ids are therefore the concatenation of per-piece
tokenizations, which also keeps the document prefix byte-identical across questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

    def render(self, system: str, user_parts: list[str], *, enable_thinking: bool | None = None) -> Rendered:
        """system is trusted; user_parts are untrusted and appear in order in one user message."""
        slots = [_SLOT.format(i) for i in range(len(user_parts))]
        kwargs: dict[str, Any] = {}
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        text = self.template.render(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "".join(slots)}],
            add_generation_prompt=True, bos_token=self.bos_text, eos_token=self.eos_text, **kwargs,
        )
        pieces: list[tuple[str, bool]] = []
        rest = text
        for slot, part in zip(slots, user_parts, strict=True):
            before, found, rest = rest.partition(slot)
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
        tokens += vocab.tokenize(text.encode("utf-8"), add_bos=bos, special=trusted)
        first = False
    return tokens
