"""Run the parser in a separate process with a wall-clock and an address-space limit.

A hostile PDF can loop or balloon memory inside pypdf; here that kills one short-lived child, not
the service. Children fork from a forkserver that has already imported the parsers and loaded the
tokenizer (sandbox_child.py), so each parse starts in milliseconds and never inherits the
server's memory (a loaded model, open sockets).

A child must not outlive its purpose either: if the server dies (SIGKILL, OOM) mid-parse, nobody
is left to enforce the wall-clock limit, and the forkserver stays as long as its children do. So
each child watches for itself: a watchdog thread ends it once the server's process is gone or its
own wall-clock limit has passed, and an RLIMIT_CPU of the limit (+2 s) ends it even where the
parser holds the interpreter lock.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import threading
import time
from typing import Any

from docqa import errors
from docqa.ingest import ParsedDocument, ParseLimits

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["docqa.ingest.sandbox_child"])


def _watchdog(server_pid: int, timeout_s: float) -> None:
    """End this child when the server is gone or the wall-clock limit has passed (the server would
    have given up on it by then)."""
    deadline = time.monotonic() + timeout_s + 1.0
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # alive, owned by someone else (cannot happen for our own parent)
            pass
        time.sleep(0.25)
    os._exit(3)


def _child(conn: Any, data: bytes, filename: str, limits: ParseLimits, memory_bytes: int,
           server_pid: int = 0, timeout_s: float = 0.0) -> None:
    from docqa.ingest.parse import parse_upload

    try:
        if server_pid and timeout_s:
            threading.Thread(target=_watchdog, args=(server_pid, timeout_s), daemon=True).start()
            cpu = math.ceil(timeout_s) + 2  # CPU seconds ≤ wall seconds for one thread: never before the timeout
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
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
    proc = _CTX.Process(target=_child, args=(child, data, filename, limits, memory_bytes, os.getpid(), timeout_s),
                        daemon=True)
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
