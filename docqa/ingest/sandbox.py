"""Run the parser in a separate process with a wall-clock and an address-space limit.

A hostile PDF can loop or balloon memory inside pypdf; here that kills one short-lived child, not
the service. OCR (the `tesseract` program) runs as the child's own child, under the same
address-space limit; the child announces how many pages it will OCR and both it and the server
extend the wall-clock limit by `ocr_page_timeout_s` a page, so a long scan gets the time it needs
while a stalled parse is still abandoned. Children fork from a forkserver that has already
imported the parsers and loaded the tokenizer (sandbox_child.py), so each parse starts in
milliseconds and never inherits the server's memory (a loaded model, open sockets).

A child must not outlive its purpose either: if the server dies (SIGKILL, OOM) mid-parse, nobody
is left to enforce the wall-clock limit, and the forkserver stays as long as its children do. So
each child watches for itself: a watchdog thread ends it once the server's process is gone or its
own wall-clock limit has passed, and an RLIMIT_CPU of the limit (+2 s) ends it even where the
parser holds the interpreter lock.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from typing import Any

from docqa import errors
from docqa.ingest import ParsedDocument, ParseLimits

_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["docqa.ingest.sandbox_child"])


class _Deadline:
    """The child's own wall-clock limit; OCR extends it (as it extends the server's)."""

    def __init__(self, timeout_s: float) -> None:
        self.at = time.monotonic() + timeout_s + 1.0

    def extend(self, seconds: float) -> None:
        self.at += seconds
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if soft != resource.RLIM_INFINITY:
            want = soft + math.ceil(seconds)
            resource.setrlimit(resource.RLIMIT_CPU, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _watchdog(server_pid: int, deadline: _Deadline) -> None:
    """End this child when the server is gone or the wall-clock limit has passed (the server would
    have given up on it by then)."""
    while time.monotonic() < deadline.at:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:  # alive, owned by someone else (cannot happen for our own parent)
            pass
        time.sleep(0.25)
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGKILL)  # tesseract with it: it is in this child's process group
    os._exit(3)


def _child(conn: Any, data: bytes, filename: str, limits: ParseLimits, memory_bytes: int,
           server_pid: int = 0, timeout_s: float = 0.0, options: dict[str, Any] | None = None) -> None:
    from docqa.ingest.parse import parse_upload

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of its own, which tesseract joins: the server ends both at once
    deadline = _Deadline(timeout_s)

    def on_ocr(n_pages: int) -> None:
        # pdf.py keeps OCR within ocr_budget_s; one page's timeout more lets it say so itself
        seconds = min(n_pages * limits.ocr_page_timeout_s, limits.ocr_budget_s + limits.ocr_page_timeout_s)
        deadline.extend(seconds)
        conn.send(("extend", seconds, n_pages))

    try:
        if server_pid and timeout_s:
            threading.Thread(target=_watchdog, args=(server_pid, deadline), daemon=True).start()
            cpu = math.ceil(timeout_s) + 2  # CPU seconds ≤ wall seconds for one thread: never before the timeout
            # the hard limit stays, so that OCR can raise the soft one with the wall-clock limit
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        started = time.monotonic()
        doc = parse_upload(data, filename, limits, on_ocr=on_ocr, **(options or {}))
        doc.meta["parse_seconds"] = round(time.monotonic() - started, 3)
        doc.peak_rss_bytes = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
        conn.send(("ok", doc))
    except errors.DocqaError as exc:
        conn.send(("error", exc.code, exc.detail, exc.extra))
    except MemoryError:
        conn.send(("error", errors.ParseLimitExceeded.code,
                   f"{filename} needs more memory to parse than docqa allows.", {}))
    except Exception as exc:  # the parser met something it does not handle: a bad file, not a crash
        conn.send(("error", errors.InvalidDocument.code, f"{filename} could not be read ({type(exc).__name__}).", {}))
    finally:
        conn.close()


def _end(proc: Any) -> None:
    """Kill the child's process group (it and its tesseract), then the child itself if it had not yet
    made the group its own."""
    if proc.pid is not None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.is_alive():
        proc.kill()
    proc.join(5)


def warm_up() -> threading.Thread:
    """Start the forkserver (importing the parsers and the tokenizer, seconds on a busy machine) in the
    background, so the first upload after start does not wait for it."""
    from multiprocessing import forkserver

    thread = threading.Thread(target=forkserver.ensure_running, name="parse-forkserver", daemon=True)
    thread.start()
    return thread


def parse_in_sandbox(
    data: bytes, filename: str, limits: ParseLimits, *, timeout_s: float, memory_bytes: int,
    password: str | None = None, ocr_langs: str | None = None, cancel: threading.Event | None = None,
) -> ParsedDocument:
    """Parse in a fresh child. The wall-clock limit is `timeout_s`, plus `limits.ocr_page_timeout_s`
    for each page the child announces it will OCR (at most `limits.ocr_budget_s`). Setting `cancel`
    (the client left) ends the child and its tesseract at once: ClientGone. The password travels only
    through the pipe."""
    options = {"password": password, "ocr_langs": ocr_langs}
    parent, child = _CTX.Pipe(duplex=False)
    proc = _CTX.Process(target=_child, args=(child, data, filename, limits, memory_bytes, os.getpid(), timeout_s,
                                             options), daemon=True)
    proc.start()
    child.close()
    deadline = time.monotonic() + timeout_s
    allowed, ocr_pages = timeout_s, 0
    try:
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            if not parent.poll(min(left, 0.25) if cancel is not None else left):
                if cancel is not None and cancel.is_set():
                    raise errors.ClientGone(f"The client went away while {filename} was parsed; it was not stored.")
                if left > 0:
                    continue
                ocr = f" (with {ocr_pages} pages to read by OCR)" if ocr_pages else ""
                raise errors.ParseLimitExceeded(
                    f"{filename} took longer than {allowed:g} s to parse{ocr} and was abandoned; "
                    "it may be damaged or built to stall parsers."
                )
            try:
                message = parent.recv()
            except (EOFError, OSError) as exc:
                raise errors.ParseLimitExceeded(
                    f"The parser for {filename} ran out of memory or crashed; the file was not stored."
                ) from exc
            if message[0] != "extend":
                break
            deadline += message[1]
            allowed += message[1]
            ocr_pages += message[2]
    finally:
        _end(proc)
        parent.close()
    if message[0] == "ok":
        return message[1]
    _, code, detail, extra = message
    raise errors.from_code(code, detail, extra, default=errors.InvalidDocument)
