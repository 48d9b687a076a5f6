"""The checks every way of asking shares (a session's question, a batch's items), written once.

Sessions and batches used to carry their own copies, which had drifted apart: a batch question was
capped at 4,000 characters and a session question at 32 bytes per allowed token; the batch's
`max_tokens` cap was the settings' answer budget and the session's was its plan's. Now each rule is
here, and a caller passes what differs (a batch's cap is the settings' budget because its plan is
made later, per document set, by the worker).
"""

from __future__ import annotations

from collections.abc import Sequence

from docqa.errors import InvalidRequest

MODES = (None, "auto", "whole", "chunked")
BYTES_PER_TOKEN = 32  # more than any tokenizer packs into one token of text


def check_document_ids(document_ids: Sequence[str]) -> None:
    if not document_ids:
        raise InvalidRequest("Choose at least one document (document_ids is empty).")
    if len(set(document_ids)) != len(document_ids):
        raise InvalidRequest("document_ids lists the same document twice.")


def check_mode(mode: str | None) -> None:
    if mode not in MODES:
        raise InvalidRequest(f"Unknown mode {mode!r}; use 'whole', 'chunked' or leave it out.")


def clean_question(question: object, question_tokens: int, label: str = "The question") -> str:
    """The question stripped, or a refusal: not text, empty, or far too long to be tokenized at all."""
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequest(f"{label} is empty.")
    q = question.strip()
    limit = question_tokens * BYTES_PER_TOKEN
    size = len(q.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidRequest(
            f"{label} is {size:,} bytes long; the limit is {limit:,} bytes (and {question_tokens:,} tokens, "
            "DOCQA_QUESTION_TOKENS).", limit=limit, bytes=size,
        )
    return q


def check_question_tokens(question: str, n_tokens: int, question_tokens: int, label: str = "The question") -> None:
    if not question.strip():
        raise InvalidRequest(f"{label} is empty.")
    if n_tokens > question_tokens:
        raise InvalidRequest(
            f"{label} is {n_tokens:,} tokens long; the limit is {question_tokens:,} tokens "
            "(DOCQA_QUESTION_TOKENS).", limit=question_tokens, tokens=n_tokens,
        )


def check_max_tokens(max_tokens: int | None, cap: int, what: str) -> None:
    """`max_tokens`, when given, between 1 and `cap` (`what` names the cap in the sentence)."""
    if max_tokens is not None and not 1 <= max_tokens <= cap:
        raise InvalidRequest(f"max_tokens must be between 1 and {cap:,}, {what}.", limit=cap)
