"""Rate limits counted in the database, so that a limit holds across every instance sharing it. No HTTP here.

A limit is a fixed window per key (e.g. "uploads:alice"), opened by the first request and lasting the
limit's unit, as Litestar's own limiter does. One atomic upsert (`INSERT … ON CONFLICT DO UPDATE …
RETURNING`, the same SQL on SQLite and PostgreSQL) counts the request and returns the window's count:
two instances counting at once never both take the last slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text

from docqa.store.db import Database

SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

_HIT = text("""
INSERT INTO rate_counters (key, count, reset_at) VALUES (:key, 1, :reset_at)
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN rate_counters.reset_at <= :now THEN 1 ELSE rate_counters.count + 1 END,
    reset_at = CASE WHEN rate_counters.reset_at <= :now THEN excluded.reset_at ELSE rate_counters.reset_at END
RETURNING count, reset_at
""")


@dataclass(frozen=True)
class Hit:
    allowed: bool
    count: int  # requests in this window, this one included
    reset_at: int  # epoch seconds

    def retry_after(self, now: float | None = None) -> int:
        return max(1, self.reset_at - int(now if now is not None else time.time()))


class RateCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def hit(self, key: str, limit: int, unit: str) -> Hit:
        """Count one request under `key`; allowed while the window holds at most `limit` of them."""
        now = int(time.time())
        with self.db.transaction() as s:
            count, reset_at = s.execute(_HIT, {"key": key[:200], "now": now,
                                               "reset_at": now + SECONDS[unit]}).one()
        return Hit(allowed=int(count) <= limit, count=int(count), reset_at=int(reset_at))
