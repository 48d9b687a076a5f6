"""How long reading a document set will take, said before anything is read.

Every answer stores its timings (`prefill_tokens`, `prefill_s`, `prefix_source`) with the message
or batch item, and, since this module, the model's identity (`model_identity`: a hash of its GGUF
header and size, so a different file under the same name is a different model). Those rows are the
service's record of reading rates measured on this machine for each model: nothing else is kept.

The estimate for a plan takes the recent readings of the same model that evaluated their prefix
(not those that reused a cached or snapshotted prefix), prefers the ones at a similar depth (within
a factor of 4 of the tokens to read: llama.cpp's prefill slows as the context fills), and divides
their tokens by their seconds. With no reading of that model yet it says so instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from docqa.store.db import Database
from docqa.store.models import BatchItem, Message

RECENT = 400  # rows looked at, newest first
MIN_TOKENS = 32  # a reading shorter than this says little about a rate
DEPTH_FACTOR = 4.0


@dataclass
class ReadingEstimate:
    seconds: float | None  # None: no reading of this model measured yet
    tokens: int
    rate_tokens_per_s: float | None
    samples: int  # readings the rate comes from
    similar_depth: bool  # the samples read between tokens/4 and tokens·4 tokens
    basis: str  # one sentence for a person

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measured(timings: dict[str, Any]) -> tuple[int, float] | None:
    """(tokens, seconds) of a reading that evaluated its prefix, or None."""
    tokens, seconds = timings.get("prefill_tokens"), timings.get("prefill_s")
    if timings.get("prefix_source", "evaluated") != "evaluated":
        return None
    if not isinstance(tokens, int) or not isinstance(seconds, int | float) or tokens < MIN_TOKENS or seconds <= 0:
        return None
    return tokens, float(seconds)


class ReadingRates:
    def __init__(self, db: Database) -> None:
        self.db = db

    def samples(self, identity: str) -> list[tuple[int, float]]:
        with self.db.reader() as s:
            rows = list(s.scalars(select(Message.timings).where(Message.role == "assistant")
                                  .order_by(Message.id.desc()).limit(RECENT)))
            rows += list(s.scalars(select(BatchItem.timings).where(BatchItem.status == "done")
                                   .order_by(BatchItem.id.desc()).limit(RECENT)))
        out = []
        for t in rows:
            if (t or {}).get("model_identity") == identity and (m := measured(t)) is not None:
                out.append(m)
        return out

    def estimate(self, identity: str, tokens: int) -> ReadingEstimate:
        samples = self.samples(identity)
        if not samples:
            return ReadingEstimate(None, tokens, None, 0, False,
                                   "no reading by this model has been measured on this server yet; "
                                   "the first question measures it")
        near = [(n, s) for n, s in samples if tokens / DEPTH_FACTOR <= n <= tokens * DEPTH_FACTOR]
        use = near or samples
        rate = sum(n for n, _ in use) / sum(s for _, s in use)
        depth = "at a similar depth" if near else "at other depths (none near this one yet)"
        basis = (f"{rate:,.0f} tokens/s, measured for this model on this server over {len(use)} "
                 f"reading{'' if len(use) == 1 else 's'} {depth}")
        return ReadingEstimate(round(tokens / rate, 1), tokens, round(rate, 1), len(use), bool(near), basis)
