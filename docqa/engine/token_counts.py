"""Exact token counts of document sets, paid once: a second plan over the same set costs no tokenizing.

Planning needs the exact number of prompt tokens of a document set with the model's own tokenizer
(and, in chunked mode, how many chunks it cuts into). Tokenizing is the whole cost of a plan: 21.9 M
tokens took about a minute. A count depends only on the tokenizer (the model file's identity), the
documents (ids are never reused and a document's text never changes) and, for chunks, the chunk
layout, so it is computed once and kept in a bounded LRU keyed by exactly those. Concurrent plans of
one set wait for the first count instead of each tokenizing (single flight).

The ceiling: a set larger than DOCQA_MAX_SET_TOKENS is refused at plan time with the numbers. A set
whose stored cl100k estimate (counted at upload) is already more than twice the ceiling is refused
before anything is tokenized: no tokenizer of a model docqa runs counts half as many tokens as cl100k.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from docqa.errors import DocumentSetTooLarge

CAPACITY = 1024
ESTIMATE_SLACK = 2


class _Doc(Protocol):
    @property
    def id(self) -> str | None: ...  # None: not stored (built in memory), so never cached

    @property
    def token_estimate(self) -> int | None: ...


class TokenCounts:
    def __init__(self, max_set_tokens: int, capacity: int = CAPACITY) -> None:
        self.max_set_tokens = max_set_tokens
        self.capacity = capacity
        self._counts: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, ...], threading.Lock] = {}
        self._thread = threading.local()  # this thread's (cached, computed) since tally(reset=True)

    def check_estimate(self, documents: Iterable[_Doc]) -> None:
        """Refuse, before any tokenizing, a set whose upload-time estimate is far past the ceiling."""
        estimate = sum(d.token_estimate or 0 for d in documents)
        if estimate > ESTIMATE_SLACK * self.max_set_tokens:
            raise DocumentSetTooLarge(
                f"These documents hold about {estimate:,} tokens; this server plans at most "
                f"{self.max_set_tokens:,} tokens per document set (DOCQA_MAX_SET_TOKENS). Choose fewer or "
                "smaller documents.", tokens_estimate=estimate, limit=self.max_set_tokens,
            )

    def prompt_tokens(self, identity: str, documents: Sequence[_Doc], compute: Callable[[], int]) -> int:
        """The set's prompt tokens (from the cache, or `compute()` once), refused past the ceiling."""
        self.check_estimate(documents)
        n = self.get(_key(identity, "prompt", documents), compute)
        if n > self.max_set_tokens:
            raise DocumentSetTooLarge(
                f"These documents are {n:,} tokens for this model; this server plans at most "
                f"{self.max_set_tokens:,} tokens per document set (DOCQA_MAX_SET_TOKENS). Choose fewer or "
                "smaller documents.", tokens=n, limit=self.max_set_tokens,
            )
        return n

    def chunks(self, identity: str, documents: Sequence[_Doc], layout: str, compute: Callable[[], int]) -> int:
        return self.get(_key(identity, f"chunks:{layout}", documents), compute)

    def tally(self, reset: bool = False) -> tuple[int, int]:
        """(counts served from the cache, counts computed) by the calling thread, optionally starting afresh."""
        cached, computed = getattr(self._thread, "tally", (0, 0))
        if reset:
            self._thread.tally = (0, 0)
        return cached, computed

    def _count(self, cached: int, computed: int) -> None:
        c, n = getattr(self._thread, "tally", (0, 0))
        self._thread.tally = (c + cached, n + computed)

    def get(self, key: tuple[str, ...] | None, compute: Callable[[], int]) -> int:
        if key is None:
            self._count(0, 1)
            return compute()
        with self._lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                self._count(1, 0)
                return self._counts[key]
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:  # one thread counts; the others wait for its result
            with self._lock:
                if key in self._counts:
                    self._count(1, 0)
                    return self._counts[key]
            n = compute()
            self._count(0, 1)
            with self._lock:
                self._counts[key] = n
                while len(self._counts) > self.capacity:
                    self._counts.popitem(last=False)
                self._flights.pop(key, None)
            return n


def _key(identity: str, what: str, documents: Sequence[_Doc]) -> tuple[str, ...] | None:
    ids = [d.id for d in documents]
    if not identity or any(i is None for i in ids):
        return None
    return (identity, what, *(str(i) for i in ids))
