"""Issue 29: fair and private between principals. Two (or three) principals against real parts: a real
`docqa serve` process, real parse processes and the real Tesseract, the real runner and model."""

from __future__ import annotations

import contextlib
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
    server = Server(tmp_path / "data", env={**ENV, "DOCQA_PARSE_PROCESSES": "2", "DOCQA_PRINCIPAL_PARSES": "1",
                                            "DOCQA_OCR_BUDGET_S": "100000"})  # minutes of OCR: never done in time
    server.start()
    big = scan(400)
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


# --- the model's queue: fair shares between principals within a class --------------------------------------


def haystack(n_lines: int, key: str) -> bytes:
    filler = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]
    lines = [f"{filler[i % len(filler)]} Line {i}." for i in range(n_lines)]
    lines.insert(n_lines // 2, f"The pass key is {key}.")
    return ("\n".join(lines) + "\n").encode()


def test_another_principals_question_is_answered_during_a_long_reading(tmp_path: Path) -> None:
    """Alice's question reads a ~1,500-token document; Bob's 8-token question, asked while she reads, is
    answered before her reading ends: her job gives way at its next slice, keeps what it read (a partial
    snapshot) and resumes from it. Before, Bob waited for all of her reading (same class, never yielded)."""
    server = Server(tmp_path / "data", env={**ENV, "DOCQA_N_BATCH": "32", "DOCQA_READ_AHEAD": "false"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            def up(who: str, name: str, data: bytes) -> str:
                r = http.post("/api/documents", headers=HEAD[who], files={"file": (name, data, "text/plain")})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            def session(who: str, doc: str) -> str:
                r = http.post("/api/sessions", headers=HEAD[who], json={"document_ids": [doc]})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            alice = session("alice", up("alice", "long.txt", haystack(140, "52817")))
            bob = session("bob", up("bob", "short.txt", haystack(4, "61244")))
            events: list[tuple[float, str, dict[str, Any]]] = []
            reading = threading.Event()

            def alice_asks() -> None:
                import json

                body = {"question": "What is the pass key?", "max_tokens": 4, "sampling": {"temperature": 0}}
                with httpx.Client(base_url=server.url, timeout=600) as own, own.stream(
                        "POST", f"/api/sessions/{alice}/questions", json=body,
                        headers={**HEAD["alice"], "accept": "text/event-stream"}) as r:
                    event = ""
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            event = line.partition(":")[2].strip()
                        elif line.startswith("data:"):
                            events.append((time.monotonic(), event, json.loads(line.partition(":")[2])))
                            if event == "progress" and events[-1][2].get("tokens_done"):
                                reading.set()

            thread = threading.Thread(target=alice_asks)
            thread.start()
            assert reading.wait(300), "alice's reading did not start"
            r = http.post(f"/api/sessions/{bob}/questions", headers=HEAD["bob"],
                          json={"question": "What is the pass key?", "max_tokens": 8, "sampling": {"temperature": 0}})
            bob_done = time.monotonic()
            assert r.status_code == 200, r.text
            thread.join(1200)
            done = [(t, d) for t, e, d in events if e == "done"]
            assert done, [e for _, e, _ in events][-5:]
            alice_done, answer = done[0]
            assert bob_done < alice_done  # answered while alice's document was still being read
            timings = answer["timings"]
            assert timings["yields"] >= 1 and timings["resumed_tokens"] > 0, timings  # resumed, not read again
            # her answer is whole: one reading over both runs, the part read before the yield not read again
            assert timings["prefill_tokens"] + timings["cached_tokens"] > 1200, timings
    finally:
        server.stop()


# --- read-ahead: one set per principal, a cap in all, stopped and forgotten when a document is deleted -----


@pytest.mark.xfail(reason="issue 29 open: a stopped read-ahead's queued ticket is not yet withdrawn from the "
                   "queue on the seam's ReadAhead (Runtime.withdraw was built on the pre-seam path)", strict=False)
def test_read_ahead_is_one_set_per_principal_capped_and_stopped_by_a_delete(tmp_path: Path) -> None:
    """Alice sends 24 read-aheads (8 distinct sets) over 8 documents: one set is read (her last), the others
    are stopped, not queued. With DOCQA_READ_AHEAD_SETS=1, Bob's set is refused while hers reads. Bob's set over
    the same bytes as one of hers is his own entry. Deleting her documents stops and forgets her read-ahead at once."""
    env = {**ENV, "DOCQA_N_BATCH": "32", "DOCQA_READ_AHEAD": "true", "DOCQA_READ_AHEAD_SETS": "1",
           "DOCQA_PRELOAD": "false"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            def up(who: str, name: str, data: bytes) -> str:
                r = http.post("/api/documents", headers=HEAD[who], files={"file": (name, data, "text/plain")})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            def read_ahead(who: str, ids: list[str]) -> dict[str, Any]:
                r = http.post("/api/read-ahead", headers=HEAD[who], json={"document_ids": ids})
                assert r.status_code == 202, r.text
                return dict(r.json())

            def health() -> dict[str, Any]:
                return dict(http.get("/api/health", headers=HEAD["alice"]).json()["details"]["models"]["default"])

            docs = [up("alice", f"doc-{i}.txt", haystack(300, str(10000 + i))) for i in range(8)]
            states = [read_ahead("alice", [docs[(n * 3 + k) % 8] for k in range(1 + n % 2)])["state"]
                      for n in range(24)]
            last = [docs[(23 * 3 + k) % 8] for k in range(1 + 23 % 2)]
            mine = http.get("/api/read-ahead", headers=HEAD["alice"]).json()["sets"]
            active = [s for s in mine if s["state"] in ("queued", "reading", "yielded")]
            assert [s["document_ids"] for s in active] in ([last], []), (mine, states)  # her last set only (or done)
            assert sum(s["state"] == "stopped" for s in mine) >= 6, (mine, states)  # 8 distinct sets
            ra = health()["classes"]["read_ahead"]
            # her last set queued, and at most the one that was running, stopping at its next slice
            assert ra["queued_jobs"] <= 1 and ra["places"] <= 2, ra

            # the cap (1): while hers reads, Bob's set is refused, not queued; over the same bytes as hers
            # it is still his own entry, never hers
            bob_doc = up("bob", "doc-0.txt", haystack(300, "10000"))
            if active:
                bob = read_ahead("bob", [bob_doc])
                assert bob["state"] == "refused" and "DOCQA_READ_AHEAD_SETS" in bob["reason"], bob
            assert all(s["document_ids"] == [bob_doc] for s in
                       http.get("/api/read-ahead", headers=HEAD["bob"]).json()["sets"])

            # a new set of hers, then every document of hers deleted: stopped and forgotten at once
            read_ahead("alice", [docs[0], docs[1], docs[2]])
            for d in docs:
                assert http.delete(f"/api/documents/{d}", headers=HEAD["alice"]).status_code == 204
            assert http.get("/api/read-ahead", headers=HEAD["alice"]).json()["sets"] == []
            assert wait_for(lambda: health()["classes"]["read_ahead"]["places"] == 0, timeout=30), health()
            assert health()["classes"]["read_ahead"]["queued_jobs"] == 0
    finally:
        server.stop()


# --- connections: a cap per client address, and on one upload's total time ---------------------------------


def _closed_by_server(s: Any) -> bytes:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return data


def test_connections_per_client_are_capped_and_an_upload_has_a_total_time(tmp_path: Path) -> None:
    import socket

    env = {**ENV, "DOCQA_CLIENT_CONNECTIONS": "4", "DOCQA_MAX_UPLOAD_S": "3",
           "DOCQA_CLIENT_TIMEOUT_S": "1", "DOCQA_PRELOAD": "false"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(4)]
        for s in held:
            s.sendall(b"GET /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n\r\n"
                      % KEYS["alice"].encode())  # kept alive after their answer
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        fifth = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        answer = _closed_by_server(fifth)
        assert answer.startswith(b"HTTP/1.1 429 ") and b"retry-after: 1" in answer.lower(), answer[:300]
        assert b"DOCQA_CLIENT_CONNECTIONS" in answer
        for s in held:
            s.close()
        fifth.close()
        # the places are given back: a new connection is served (the closes may take a moment to be seen)
        assert wait_for(lambda: httpx.get(server.url + "/api/health").status_code == 200, timeout=10)

        # an upload at 40 KB/s (above DOCQA_MIN_UPLOAD_RATE) that would take 25 s: cut at 3 s, nothing stored
        size = 1_000_000
        s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        s.sendall(b"POST /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n"
                  % (KEYS["alice"].encode(), size))
        s.sendall(b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\n'
                  b"Content-Type: text/plain\r\n\r\n")
        started = time.monotonic()
        answer = b""
        s.settimeout(0.5)
        while time.monotonic() - started < 20 and not answer:
            try:
                s.sendall(b"x" * 20_000)
            except OSError:
                break
            try:
                answer = s.recv(4096)
            except TimeoutError:
                continue
        s.settimeout(5)
        with contextlib.suppress(OSError):
            answer += _closed_by_server(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"DOCQA_MAX_UPLOAD_S" in answer, answer[:300]
        assert httpx.get(server.url + "/api/documents", headers=HEAD["alice"]).json() == []
    finally:
        server.stop()


# --- planning lanes: one per principal ----------------------------------------------------------------------


def lorem(n_bytes: int, seed: int) -> bytes:
    words = ["contract", "party", "term", "notice", "fee", "renewal", "clause", "liability", "payment", "annex"]
    out, size, i = [], 0, 0
    while size < n_bytes:
        line = f"{seed}-{i}: " + " ".join(words[(i * 7 + k * 3 + seed) % 10] for k in range(12)) + ".\n"
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()


def test_one_principals_plans_never_hold_anothers(tmp_path: Path) -> None:
    """One planning thread (DOCQA_PLANNING_THREADS=1): Alice's four plans over large documents not counted
    yet take turns on her lane; Bob's plan is answered while hers are still being counted (on a shared lane
    it waited behind all four)."""
    env = {**ENV, "DOCQA_PLANNING_THREADS": "1", "DOCQA_PRELOAD": "false", "DOCQA_READ_AHEAD": "false"}
    server = Server(tmp_path / "data", env=env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            def up(who: str, name: str, data: bytes) -> str:
                r = http.post("/api/documents", headers=HEAD[who], files={"file": (name, data, "text/plain")})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            large = [up("alice", f"large-{i}.txt", lorem(400_000, i)) for i in range(4)]
            small = up("bob", "note.txt", b"Bob's only note.\n")
            ended: list[float] = []

            def alice_plans(doc: str) -> None:
                r = httpx.post(server.url + "/api/plan", json={"document_ids": [doc]}, headers=HEAD["alice"],
                               timeout=600)
                assert r.status_code == 200, r.text
                ended.append(time.monotonic())

            threads = [threading.Thread(target=alice_plans, args=(d,)) for d in large]
            for t in threads:
                t.start()
            time.sleep(0.5)
            r = http.post("/api/plan", json={"document_ids": [small]}, headers=HEAD["bob"])
            bob_done = time.monotonic()
            assert r.status_code == 200, r.text
            for t in threads:
                t.join()
            assert len(ended) == 4
            assert sum(t > bob_done for t in ended) >= 2, (ended, bob_done)  # most of hers were still counting
    finally:
        server.stop()
