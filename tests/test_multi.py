"""Several docqa instances serving as one: two real `docqa serve` processes on one real PostgreSQL server
(tests/pg.py) and one data folder, as behind a load balancer.

- uploads to both at once: no lost or duplicated rows, no orphan files; a listing on either shows all;
- one 20-question batch is answered exactly once across both, and both work on it;
- a rate limit holds across both (counted in the database);
- a delete on one while the other uploads the same bytes (same owner, or another owner sharing the
  file): nothing lost, nothing orphaned;
- one server SIGKILLed mid-batch: the other finishes the killed one's question once its lease expired,
  never before; the restarted server's start-up sweep leaves alone what the live one is writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from bench.load import GARDEN, store_audit
from tests.browser import Server
from tests.pg import Cluster

ALICE = {"X-API-Key": "alice-key-0123456789"}
CAROL = {"X-API-Key": "carol-key-0123456789"}
LEASE_S = 3.0
QUESTIONS = ["When does the garden open?", "What is the tool shed code?", "Who collects the compost?",
             "How many raised beds are there?", "How many families wait?"]
SAMPLING = {"temperature": 0, "seed": 1}


@dataclass
class Pair:
    a: Server
    b: Server
    url: str  # the database
    data_dir: Path
    engine: Engine

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def consistent(self) -> dict[str, str]:
        rows, problems = store_audit(self.data_dir, self.url)
        assert problems == [], problems
        return rows


@pytest.fixture(scope="module")
def pair(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    name = pg_cluster.create_database()
    url = pg_cluster.url(name)
    data_dir = tmp_path_factory.mktemp("multi") / "data"
    env = {"DOCQA_DATABASE_URL": url, "DOCQA_API_KEYS": f"alice:{ALICE['X-API-Key']},carol:{CAROL['X-API-Key']}",
           "DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "6/minute", "DOCQA_BATCH_LEASE_S": str(LEASE_S),
           "DOCQA_SEED": "1", "DOCQA_N_THREADS": "1", "DOCQA_QUEUE_SIZE": "8",
           "DOCQA_PRINCIPAL_PARSES": "16", "DOCQA_PARSE_PROCESSES": "16"}  # every upload of the race at once
    a, b = Server(data_dir, env=env), Server(data_dir, env=env)
    a.log_path, b.log_path = data_dir / "serve-a.log", data_dir / "serve-b.log"
    engine = create_engine(url)
    try:
        # both start at once: migrations run once (advisory lock), the second finds the schema at head
        starters = [threading.Thread(target=s.start) for s in (a, b)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        assert a.proc is not None and b.proc is not None and a.proc.poll() is None and b.proc.poll() is None
        yield Pair(a, b, url, data_dir, engine)
    finally:
        a.stop()
        b.stop()
        engine.dispose()
        pg_cluster.drop_database(name)


def client(server: Server, headers: dict[str, str] = ALICE) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=headers, timeout=120)


def post_file(server: Server, name: str, data: bytes, headers: dict[str, str] = ALICE) -> httpx.Response:
    with client(server, headers) as http:
        return http.post("/api/documents", files={"file": (name, data, "text/plain")})


def test_health_with_keys_names_no_database_url_pid_or_path(pair: Pair) -> None:
    for server in (pair.a, pair.b):
        for headers in ({}, ALICE):  # without a key, and with one: neither learns where things are
            health = httpx.get(f"{server.url}/api/health", headers=headers).json()
            database = health["details"]["database"]
            assert database["dialect"] == "postgresql" and database["shared"] is True
            assert "url" not in database and 0 <= database["latency_ms"] < 5000
            text = json.dumps(health)
            assert "s3cret" not in text and '"pid"' not in text and "127.0.0.1:" not in text, text[:2000]
            assert "system_info" not in text and "/tmp" not in text and "/root" not in text


def test_uploads_to_both_at_once_lose_and_duplicate_nothing(pair: Pair) -> None:
    unique = [(pair.a if i % 2 else pair.b, f"u{i}.txt", f"Upload {i}: the deposit is {i * 7} euros.\n".encode())
              for i in range(24)]
    same = b"The same bytes, uploaded to both instances at the same moment.\n"
    jobs = [*unique, (pair.a, "same.txt", same), (pair.b, "same.txt", same), (pair.a, "same.txt", same)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: post_file(*job), jobs))
    assert all(r.status_code in (200, 201) for r in answers), [r.text for r in answers if r.status_code >= 300]
    created = [r.json()["id"] for r in answers[:24]]
    assert [r.status_code for r in answers[:24]] == [201] * 24 and len(set(created)) == 24
    same_answers = answers[24:]
    assert sorted(r.status_code for r in same_answers) == [200, 200, 201]  # one stored it; the others found it
    assert len({r.json()["id"] for r in same_answers}) == 1
    expected = {*created, same_answers[0].json()["id"]}
    for server in (pair.a, pair.b):  # a listing on either shows what both stored
        with client(server) as http:
            assert {d["id"] for d in http.get("/api/documents").json()} >= expected
    rows = pair.consistent()  # every row has its file and sections; no orphan or temp file
    assert set(rows) >= expected


def test_one_batch_is_answered_exactly_once_across_both(pair: Pair) -> None:
    with client(pair.a) as http:
        doc = http.post("/api/documents", files={"file": ("garden.txt", GARDEN.encode(), "text/plain")}).json()["id"]
        questions = [f"{QUESTIONS[i % len(QUESTIONS)]} ({i + 1})" for i in range(20)]
        r = http.post("/api/batches", json={"document_ids": [doc], "questions": questions, "max_tokens": 4,
                                            "sampling": SAMPLING})
        assert r.status_code == 202, r.text
        batch_id = r.json()["id"]
    owners: set[str] = set()
    deadline = time.monotonic() + 300
    while True:  # which workers hold leases meanwhile: both instances take part
        owners |= {o for (o,) in pair.rows("SELECT lease_holder FROM batch_items WHERE batch_id = :b AND "
                                           "lease_holder IS NOT NULL", b=batch_id)}
        with client(pair.b) as http:  # progress read on the other instance
            batch = http.get(f"/api/batches/{batch_id}").json()
        if batch["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    assert batch["status"] == "done" and batch["done"] == batch["total"] == 20, batch
    assert all(x["attempts"] == 1 and x["answer"] is not None and x["error"] is None for x in batch["results"])
    assert sorted(x["question_index"] for x in batch["results"]) == list(range(20))
    pids = {o.rsplit(":", 2)[1] for o in owners}
    assert pids == {str(pair.a.proc.pid), str(pair.b.proc.pid)}, owners  # type: ignore[union-attr]


def test_a_rate_limit_holds_across_both(pair: Pair) -> None:
    """DOCQA_RATE_QUESTIONS=6/minute for carol, alternating instances: 6 pass (then 422: an empty batch), the
    7th is refused on either."""
    statuses = []
    for i in range(6):
        with client(pair.a if i % 2 else pair.b, CAROL) as http:
            statuses.append(http.post("/api/batches", json={}).status_code)
    assert statuses == [422] * 6
    for server in (pair.a, pair.b):
        with client(server, CAROL) as http:
            r = http.post("/api/batches", json={})
        assert r.status_code == 429 and "DOCQA_RATE_QUESTIONS" in r.json()["detail"], r.text
        assert 1 <= int(r.headers["retry-after"]) <= 60


def test_a_delete_on_one_while_the_other_uploads_the_same_bytes(pair: Pair) -> None:
    outcomes: list[int] = []
    for round_no in range(10):
        data = f"Round {round_no}: bytes deleted on one instance while the other uploads them.\n".encode()
        sha = hashlib.sha256(data).hexdigest()
        first = post_file(pair.a, "r.txt", data)
        assert first.status_code == 201, first.text
        uploader = CAROL if round_no % 2 else ALICE  # another owner shares the file; the same owner dedups
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            deleted = pool.submit(_delete_after, barrier, pair.a, first.json()["id"])
            uploaded = pool.submit(_upload_after, barrier, pair.b, data, uploader)
            assert deleted.result() == 204
            got = uploaded.result()
        assert got.status_code in (200, 201), got.text
        outcomes.append(got.status_code)
        rows = pair.consistent()  # the file exists exactly while a row refers to it
        if got.status_code == 201:  # a new row: its file is there whatever the delete did
            assert got.json()["id"] in rows and (pair.data_dir / "blobs" / sha[:2] / sha).is_file()
        else:  # the same owner's earlier copy was found, then deleted: neither row nor file is left
            assert sha not in rows.values() and not (pair.data_dir / "blobs" / sha[:2] / sha).exists()
        with client(pair.b, uploader) as http:  # clean up for the next round
            if got.status_code == 201:
                assert http.delete(f"/api/documents/{got.json()['id']}").status_code == 204
    pair.consistent()
    print(f"\nthe concurrent uploads answered {outcomes}")


def _delete_after(barrier: threading.Barrier, server: Server, doc_id: str) -> int:
    barrier.wait()
    with client(server) as http:
        return http.delete(f"/api/documents/{doc_id}").status_code


def _upload_after(barrier: threading.Barrier, server: Server, data: bytes, headers: dict[str, str]) -> httpx.Response:
    barrier.wait()
    return post_file(server, "r.txt", data, headers)


def test_a_server_killed_mid_batch_and_the_other_finishes_after_the_lease(pair: Pair) -> None:
    assert pair.a.proc is not None and pair.b.proc is not None
    a_pid = str(pair.a.proc.pid)
    with client(pair.b) as http:
        doc = http.post("/api/documents", files={"file": ("garden.txt", GARDEN.encode(), "text/plain")}).json()["id"]
    # The batch is created on A, whose worker wakes at once (B's only at its next poll): otherwise, on a
    # slow run, B could answer every item before A's 2-second poll claimed one.
    with client(pair.a) as http:
        r = http.post("/api/batches", json={"document_ids": [doc], "questions": QUESTIONS + QUESTIONS[:3],
                                            "max_tokens": 4, "sampling": SAMPLING})
        assert r.status_code == 202, r.text
        batch_id = r.json()["id"]
    deadline = time.monotonic() + 180
    while True:  # until the instance to kill is answering one of them
        held = pair.rows("SELECT id, lease_holder, lease_expires_at FROM batch_items WHERE batch_id = :b AND "
                         "status = 'running'", b=batch_id)
        mine = [h for h in held if h[1].rsplit(":", 2)[1] == a_pid]
        if mine:
            break
        assert time.monotonic() < deadline, "instance A never took an item"
        time.sleep(0.02)
    os.kill(pair.a.proc.pid, signal.SIGKILL)
    pair.a.proc.wait(10)
    item_id, owner, _ = mine[0]
    # its lease still runs: the live instance leaves the item alone until it expires (no heartbeat renews it)
    (still,) = pair.rows("SELECT lease_holder, status, lease_expires_at FROM batch_items WHERE id = :i", i=item_id)
    interrupted = still[1] == "running"  # (not when it was written in the instant before the kill)
    if interrupted:
        assert still[0] == owner
        expires = still[2]
        while True:
            (row,) = pair.rows("SELECT lease_holder, status, (now() AT TIME ZONE 'utc') FROM batch_items "
                               "WHERE id = :i", i=item_id)
            if row[0] != owner:
                assert row[2] >= expires, (row, expires)  # taken over only after expiry
                break
            time.sleep(0.05)
    with client(pair.b) as http:
        while True:
            batch = http.get(f"/api/batches/{batch_id}").json()
            if batch["status"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline + 120, batch
            time.sleep(0.2)
    assert batch["status"] == "done" and batch["done"] == batch["total"] == 8, batch
    attempts = {x["id"]: x["attempts"] for x in batch["results"]}
    assert attempts[item_id] == (2 if interrupted else 1), attempts  # redone once, by the live instance
    assert all(n == 1 for i, n in attempts.items() if i != item_id), attempts

    # A comes back while B is busy storing a file: A's start-up sweep must leave B's work alone
    data = b"stored by B while A restarts\n"
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(lambda: [post_file(pair.b, f"s{i}.txt", data + bytes([65 + i])) for i in range(10)])
        pair.a.start()
        assert all(r.status_code == 201 for r in later.result())
    pair.consistent()
    print(f"\nkilled while answering: {interrupted}; attempts {sorted(attempts.values())}")
    with client(pair.a) as http:
        assert {d["filename"] for d in http.get("/api/documents").json()} >= {f"s{i}.txt" for i in range(10)}
