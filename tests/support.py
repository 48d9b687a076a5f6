"""Small helpers several test modules share."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def settled(client: Any, model: str = "default", timeout: float = 60.0) -> None:
    """Wait until a model's runner is idle again: it writes a document's KV snapshot after the answer
    (off the path to the first token), so a test that looks at the snapshot files waits for it."""
    deadline = time.monotonic() + timeout
    def busy() -> bool:
        runner = client.get("/api/health").json()["details"]["models"][model]["runner"]
        return runner["phase"] not in ("idle", None) or bool(runner.get("snapshots_writing"))

    while busy():  # the snapshot is copied after the answer, then written to disk by a thread of the runner
        assert time.monotonic() < deadline, "the runner never became idle"
        time.sleep(0.05)


def local_runtime(engine: Any, spec: Any) -> Any:
    """The local runner's queue and process behind `spec` (a test looks inside it; the engine never does)."""
    from docqa.engine.local import LocalBackend

    backend = engine.backend(spec)
    assert isinstance(backend, LocalBackend), backend
    return backend.runtime
