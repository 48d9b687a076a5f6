"""How many parse processes run at once: one cap for the server, and a share of it per principal.

Each upload's parse runs in a process of its own (sandbox.py) that may take a core and up to
DOCQA_PARSE_MEMORY_BYTES for a minute. Without a cap, 42 PDFs sent at once by one principal ran 40
parses together (5.9 GB resident) and every other upload competed for the same cores. So a parse
takes a place here first: at most DOCQA_PARSE_PROCESSES in all, and at most DOCQA_PRINCIPAL_PARSES
for one principal. Past either, the upload is refused at once, before any process starts: 429 when
it is the principal's own share that is full (their other uploads are what to wait for), 503 when
the whole pool is (the server is busy). Both carry a Retry-After of about one recent parse. Refusing
rather than queueing keeps a held connection from being the price of a busy pool; a client retries.

The places are per process: they bound this server's own parse processes, on its own cores (another
instance sharing the database has cores and places of its own).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from docqa.errors import ParsersBusy, RateLimited


class ParsePool:
    def __init__(self, total: int, per_principal: int) -> None:
        self.total = total
        self.per_principal = min(per_principal, total)
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._parse_s = 0.0  # moving average of how long a parse holds its place
        self._parses = 0

    @property
    def in_use(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def retry_after(self) -> int:
        """Seconds until a place is likely free: about one recent parse (5 before any has ended)."""
        return max(1, min(120, math.ceil(self._parse_s))) if self._parses else 5

    @contextmanager
    def place(self, principal: str, filename: str) -> Iterator[None]:
        """Hold one parse place for `principal` while the block runs, or refuse now."""
        with self._lock:
            mine = self._held.get(principal, 0)
            if mine >= self.per_principal:
                retry = self.retry_after()
                raise RateLimited(
                    f"{filename} was not parsed: you already have {mine} upload(s) being parsed, as many as "
                    f"DOCQA_PRINCIPAL_PARSES allows. Send it again in about {retry} seconds.",
                    retry_after=retry, limit=self.per_principal,
                )
            if sum(self._held.values()) >= self.total:
                retry = self.retry_after()
                raise ParsersBusy(
                    f"{filename} was not parsed: the server is parsing {self.total} uploads, as many as "
                    f"DOCQA_PARSE_PROCESSES allows. Send it again in about {retry} seconds.",
                    retry_after=retry, limit=self.total,
                )
            self._held[principal] = mine + 1
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self._held[principal] -= 1
                if not self._held[principal]:
                    del self._held[principal]
                self._parses += 1
                self._parse_s = elapsed if self._parses == 1 else 0.7 * self._parse_s + 0.3 * elapsed

    def status(self) -> dict[str, int]:
        with self._lock:
            return {"in_use": sum(self._held.values()), "processes": self.total,
                    "per_principal": self.per_principal}
