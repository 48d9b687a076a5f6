"""Run the parser in a separate process with a wall-clock and an address-space limit.

A hostile PDF can loop or balloon memory inside pypdf; here that kills one short-lived child, not
the service. Children fork from a forkserver that has already imported the parsers and loaded the
tokenizer (sandbox_child.py), so each parse starts in milliseconds and never inherits the
server's memory (a loaded model, open sockets).
"""

from __future__ import annotations

import multiprocessing
import resource
from typing import Any

from docqa import errors
from docqa.ingest import ParsedDocument, ParseLimits

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["docqa.ingest.sandbox_child"])


def _child(conn: Any, data: bytes, filename: str, limits: ParseLimits, memory_bytes: int) -> None:
    from docqa.ingest.parse import parse_upload

    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        doc = parse_upload(data, filename, limits)
        doc.peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        conn.send(("ok", doc))
    except errors.DocqaError as exc:
        conn.send(("error", type(exc).__name__, exc.detail, exc.extra))
    except MemoryError:
        conn.send(("error", "ParseLimitExceeded", f"{filename} needs more memory to parse than docqa allows.", {}))
    except Exception as exc:  # the parser met something it does not handle: a bad file, not a crash
        conn.send(("error", "InvalidDocument", f"{filename} could not be read ({type(exc).__name__}).", {}))
    finally:
        conn.close()


def parse_in_sandbox(
    data: bytes, filename: str, limits: ParseLimits, *, timeout_s: float, memory_bytes: int
) -> ParsedDocument:
    parent, child = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_child, args=(child, data, filename, limits, memory_bytes), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise errors.ParseLimitExceeded(
                f"{filename} took longer than {timeout_s:g} s to parse and was abandoned; "
                "it may be damaged or built to stall parsers."
            )
        try:
            message = parent.recv()
        except (EOFError, OSError) as exc:
            raise errors.ParseLimitExceeded(
                f"The parser for {filename} ran out of memory or crashed; the file was not stored."
            ) from exc
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if message[0] == "ok":
        return message[1]
    _, name, detail, extra = message
    cls = getattr(errors, name, errors.InvalidDocument)
    raise cls(detail, **extra)
