"""Small helpers several test modules share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOOPBACK = "http://127.0.0.1"  # a Host the app answers in loopback mode (Litestar's test client says testserver.local)


@contextmanager
def recorded(logger_name: str, level: int = logging.DEBUG) -> Iterator[list[str]]:
    """The messages logged on one logger meanwhile, at `level` or above (the app's logging set-up
    replaces root handlers, so pytest's caplog does not see them)."""
    out: list[str] = []
    handler = logging.Handler(level)
    handler.emit = lambda record: out.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
