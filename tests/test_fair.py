"""Issue 29: fair and private between principals. Two (or three) principals against real parts: a real
`docqa serve` process, real parse processes and the real Tesseract, the real runner and model."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from litestar.testing import TestClient

from docqa.settings import Settings
from docqa.web.app import create_app
from tests import doc_builders
from tests.browser import Server
from tests.support import LOOPBACK

KEYS = {"alice": "alice-fair-key-0123456789", "bob": "bob-fair-key-0123456789", "carol": "carol-fair-key-0123456789"}
HEAD = {name: {"X-API-Key": key} for name, key in KEYS.items()}
ENV = {"DOCQA_API_KEYS": ",".join(f"{n}:{k}" for n, k in KEYS.items()), "DOCQA_RATE_UPLOADS": "0",
       "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1"}


def scan(pages: int) -> bytes:
    """A scan of `pages` pages sharing one image (a small file that costs seconds a page to OCR)."""
    image = doc_builders.scan_image(["Invoice 1234", "Total due: 560 EUR", "Pay within thirty days."])
    return doc_builders.scanned_pdf([image] * pages)


def parse_processes(server: Server) -> tuple[int, int]:
    """(parse children of the forkserver, tesseract processes) under the server now."""
    assert server.proc is not None
    top = psutil.Process(server.proc.pid)
    procs = top.children(recursive=True)
    # the forkserver is the server's own child; the parse children it forks share its command line
    forkservers = {p.pid for p in top.children() if "forkserver" in " ".join(_cmdline(p))}
    parses = tesseracts = 0
    for p in procs:
        try:
            if p.ppid() in forkservers:
                parses += 1
            elif p.name().startswith("tesseract"):
                tesseracts += 1
        except psutil.Error:
            pass
    return parses, tesseracts


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def wait_for(check: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


# --- parsing: one global cap with per-principal shares; a client that leaves ends its parse and OCR --------


def test_parse_places_per_principal_and_in_all_and_a_client_that_leaves(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={**ENV, "DOCQA_PARSE_PROCESSES": "2", "DOCQA_PRINCIPAL_PARSES": "1"})
    server.start()
    big = scan(80)
    outcomes: dict[str, str] = {}

    def leave_after(who: str, seconds: float) -> None:
        try:
            httpx.post(server.url + "/api/documents", headers=HEAD[who], timeout=seconds,
                       files={"file": (f"{who}-scan.pdf", big, "application/pdf")})
            outcomes[who] = "answered"
        except httpx.TimeoutException:
            outcomes[who] = "left"

    try:
        alice = threading.Thread(target=leave_after, args=("alice", 60.0))
        alice.start()
        assert wait_for(lambda: parse_processes(server)[0] == 1), parse_processes(server)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            # alice's share (1) is held: her next upload is refused at once, before any process starts
            r = http.post("/api/documents", headers=HEAD["alice"], files={"file": ("a.txt", b"Alice's note.\n")})
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert "DOCQA_PRINCIPAL_PARSES" in r.json()["detail"] and "a.txt was not parsed" in r.json()["detail"]
            bob = threading.Thread(target=leave_after, args=("bob", 55.0))
            bob.start()
            assert wait_for(lambda: parse_processes(server)[0] == 2), parse_processes(server)
            # the pool (2) is full: carol, who holds nothing, gets 503 with Retry-After
            r = http.post("/api/documents", headers=HEAD["carol"], files={"file": ("c.txt", b"Carol's note.\n")})
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1 and "DOCQA_PARSE_PROCESSES" in r.json()["detail"]
            assert wait_for(lambda: parse_processes(server)[1] >= 1, timeout=45)  # tesseract reads a page
            alice.join()
            bob.join()
            assert outcomes == {"alice": "left", "bob": "left"}
            # both clients left: their parses and tesseracts end at once (the OCR of 40 pages would take
            # minutes), nothing of theirs is stored, and the places are free again
            assert wait_for(lambda: parse_processes(server) == (0, 0), timeout=10), parse_processes(server)
            for who in ("alice", "bob"):
                assert http.get("/api/documents", headers=HEAD[who]).json() == []
            r = http.post("/api/documents", headers=HEAD["carol"], files={"file": ("c.txt", b"Carol's note.\n")})
            assert r.status_code == 201, r.text
        assert not list((tmp_path / "data" / "blobs").rglob("*scan*"))
    finally:
        server.stop()


def test_ocr_budget_refuses_a_long_scan_after_two_pages(tmp_path: Path) -> None:
    """A 60-page scan under a 6 s OCR budget: refused once its pace is known, with the estimate, instead
    of being read for minutes (each page used to add 20 s to the parse limit, without end)."""
    settings = Settings(data_dir=tmp_path / "data", ocr_budget_s=6)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        r = client.post("/api/documents", files={"file": ("long-scan.pdf", scan(60), "application/pdf")})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "long-scan.pdf has 60 pages without a text layer" in detail
        assert "DOCQA_OCR_BUDGET_S" in detail and "Split the PDF" in detail
        assert client.get("/api/documents").json() == []


@pytest.mark.parametrize("pages", [3])
def test_a_scan_within_the_ocr_budget_is_read(tmp_path: Path, pages: int) -> None:
    settings = Settings(data_dir=tmp_path / "data", ocr_budget_s=300)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        r = client.post("/api/documents", files={"file": ("short-scan.pdf", scan(pages), "application/pdf")})
        assert r.status_code == 201, r.text
        assert r.json()["meta"]["ocr"]["pages"] == list(range(1, pages + 1))
