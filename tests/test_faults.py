"""Faults, for real: SIGKILL of a `docqa serve` subprocess mid-upload and mid-answer, a full disk
(a real tmpfs), the KV-state folder deleted or corrupted under a running app, and the model file
deleted or truncated under a running server.

SIGKILL during a batch is tests/test_batches.py::test_crash_and_resume_answers_each_question_once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from litestar.testing import TestClient
from sqlalchemy import create_engine, text

from docqa.documents import DocumentService
from docqa.errors import StorageFull
from docqa.settings import Settings
from docqa.store.db import Database, migrate
from docqa.store.files import BlobStore
from docqa.web.app import create_app
from tests.browser import Server
from tests.builders import make_many_page_pdf
from tests.pg import Cluster, run_as
from tests.support import LOOPBACK, recorded, settled

SERVER_ENV = {"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1"}
GARDEN = b"""Harbor Lane Community Garden: season notes
The garden opens on 12 March and closes on 30 October.
The tool shed code is 4471 and it is changed every June.
Compost is collected on Saturdays by Marta Jensen.
"""
BAKERY = b"""Crumb & Co. bakery: staff handbook
The bakery opens at 6 a.m. every day except Monday.
The head baker is Tomas Varga.
"""


# --- helpers -------------------------------------------------------------------------------------------


def kill9(server: Server) -> list[psutil.Process]:
    """SIGKILL the server; returns the processes it had started (the parse forkserver and its children)."""
    assert server.proc is not None
    try:
        family = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    return family


def gone_within(processes: list[psutil.Process], seconds: float) -> list[int]:
    """The pids still running (not zombies) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        alive = []
        for p in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p.pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def upload(http: httpx.Client, name: str, data: bytes, status: int = 201) -> dict[str, Any]:
    r = http.post("/api/documents", files={"file": (name, data, "text/plain")})
    assert r.status_code == status, r.text
    return r.json()


def db_rows(data_dir: Path, sql: str, url: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of the data folder's SQLite file, or of the database at `url`."""
    if url is None:
        with contextlib.closing(sqlite3.connect(data_dir / "docqa.sqlite3")) as con:
            return con.execute(sql).fetchall()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def blob_files(data_dir: Path) -> list[str]:
    root = data_dir / "blobs"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_store_consistent(data_dir: Path, url: str | None = None) -> set[str]:
    """Every document row has its file and every section; the blob folder holds exactly those files."""
    shas = {sha for (sha,) in db_rows(data_dir, "SELECT sha256 FROM documents", url)}
    assert blob_files(data_dir) == sorted(shas), (blob_files(data_dir), shas)
    bad = db_rows(data_dir, "SELECT d.id FROM documents d WHERE d.n_sections != "
                            "(SELECT count(*) FROM sections s WHERE s.document_id = d.id)", url)
    assert bad == [], bad
    return shas


def assert_no_half_answers(data_dir: Path) -> int:
    """Per session: messages alternate user, assistant; never an assistant message without its question."""
    rows = db_rows(data_dir, "SELECT session_id, role FROM messages ORDER BY session_id, created_at, id")
    by_session: dict[str, list[str]] = {}
    for sid, role in rows:
        by_session.setdefault(sid, []).append(role)
    for sid, roles in by_session.items():
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) % 2 == 0, (sid, roles)
    return len(rows)


def stream_until(base: str, sid: str, body: dict[str, Any], first: str, reached: threading.Event,
                 seen: list[str]) -> None:
    """Ask with Accept: text/event-stream; set `reached` at the first `first` event; read until the end."""
    with contextlib.suppress(httpx.HTTPError), httpx.Client(base_url=base, timeout=120) as http, http.stream(
        "POST", f"/api/sessions/{sid}/questions", json=body, headers={"accept": "text/event-stream"}
    ) as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                seen.append(line.partition(":")[2].strip())
                if seen[-1] == first:
                    reached.set()
    reached.set()


# --- 1. SIGKILL mid-upload: while the body arrives, and while the parser runs ---------------------------


@pytest.mark.both_databases
def test_sigkill_during_uploads_leaves_no_row_no_file_no_process(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    url = database_url
    server = Server(data_dir, env={**SERVER_ENV, **({"DOCQA_DATABASE_URL": url} if url else {})}).start()
    pdf = make_many_page_pdf(1500)  # ~200 KB, seconds to parse
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            kept = upload(http, "garden.txt", GARDEN)

        # One kill, two uploads in flight: (a) a big PDF whose body is still arriving (half sent, slowly, on
        # a raw socket) and (b) the same PDF complete, being parsed in its sandbox process.
        boundary = "docqa-fault-boundary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
                f"Content-Type: application/pdf\r\n\r\n").encode() + pdf + f"\r\n--{boundary}--\r\n".encode()
        head = (f"POST /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()

        def send_pdf() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{server.url}/api/documents", files={"file": ("big.pdf", pdf, "application/pdf")},
                           timeout=60)

        assert server.proc is not None
        me = psutil.Process(server.proc.pid)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head)
            for i in range(0, len(body) // 2, 16384):
                sock.sendall(body[i : i + 16384])
                time.sleep(0.01)
            threading.Thread(target=send_pdf, daemon=True).start()
            deadline = time.monotonic() + 60
            while not any(p.ppid() != me.pid for p in me.children(recursive=True)):  # the forkserver's child
                assert time.monotonic() < deadline, "the parse process never started"
                time.sleep(0.02)
            time.sleep(0.3)
            family = kill9(server)
        left = gone_within(family, 5)  # the parse forkserver and the parser itself go with the server
        assert not left, f"processes of the killed server still run: {left}"
        assert_store_consistent(data_dir, url)

        # c. what a kill between writing the file and committing its row leaves: swept at start
        orphan = data_dir / "blobs" / "ff" / ("ff" + "0" * 62)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"bytes whose row was never committed")
        (orphan.parent / ".half-written.tmp").write_bytes(b"partial")

        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            listed = [d["id"] for d in http.get("/api/documents").json()]
            assert listed == [kept["id"]]
            again = upload(http, "bakery.txt", BAKERY)  # the service works as before
        assert db_rows(data_dir, "SELECT id FROM documents ORDER BY id", url) == sorted([(kept["id"],), (again["id"],)])
        assert set(assert_store_consistent(data_dir, url)) == {kept["sha256"], again["sha256"]}
        assert "removed 2 orphan upload file(s)" in server.log_path.read_text()
    finally:
        server.stop()


# --- 2. SIGKILL while the answer streams ------------------------------------------------------------


def test_sigkill_while_the_answer_streams_stores_nothing_half_written(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, env=SERVER_ENV).start()
    question = {"question": "Describe everything the notes say, in detail.", "max_tokens": 16,
                "sampling": {"temperature": 0, "seed": 1}}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            doc = upload(http, "garden.txt", GARDEN)
            sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
        reached, seen = threading.Event(), []
        t = threading.Thread(target=stream_until, args=(server.url, sid, question, "token", reached, seen))
        t.start()
        assert reached.wait(120), "no token was streamed"
        kill9(server)
        t.join(30)
        assert "token" in seen and "done" not in seen, seen
        assert assert_no_half_answers(data_dir) == 0  # the interrupted answer left no message at all
        # The documents' snapshot is written after an answer, off the path to its first token (or before it
        # when the reading took minutes): a kill mid-answer leaves none, and no half-written one either.
        state = data_dir / "state"
        assert not state.exists() or not any(state.iterdir()), sorted(p.name for p in state.iterdir())
        # what a kill in the middle of writing a snapshot leaves (old enough not to be another writer's)
        state.mkdir(exist_ok=True)
        leftover = state / ("0" * 64 + ".kv.tmp")
        leftover.write_bytes(b"\0" * 1024)
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))

        server.start()
        assert not leftover.exists()
        with httpx.Client(base_url=server.url, timeout=120) as http:
            assert http.get(f"/api/sessions/{sid}").json()["messages"] == []
            r = http.post(f"/api/sessions/{sid}/questions", json=question)
            assert r.status_code == 200, r.text
            assert r.json()["timings"]["prefix_source"] == "evaluated"  # read again: no snapshot was written
            roles = [m["role"] for m in http.get(f"/api/sessions/{sid}").json()["messages"]]
        assert roles == ["user", "assistant"]
        assert assert_no_half_answers(data_dir) == 2
    finally:
        server.stop()


# --- 3. a full disk while storing an upload (a real, tiny tmpfs) ------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {err.decode().strip() or exc}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def fill(folder: Path, leave_bytes: int) -> Path:
    """A file (outside the blob shards, so the start-up sweep leaves it) that leaves about `leave_bytes` free."""
    st = os.statvfs(folder)
    filler = folder / "filler.bin"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_disk_full_upload_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with tmpfs(data_dir / "blobs", "size=2m,mode=0755") as blobs:
        server = Server(data_dir, env=SERVER_ENV).start()  # SQLite and the state cache on the normal disk
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                small = upload(http, "garden.txt", GARDEN)
                filler = fill(blobs, 256 * 1024)
                before = free_bytes(blobs)
                big = "".join(f"Line {n}: the tenant pays the rent on the first day of the month.\n"
                              for n in range(9000)).encode()  # ~600 KB
                r = http.post("/api/documents", files={"file": ("big.txt", big, "text/plain")})
                assert r.status_code == 507, r.text
                assert r.headers["content-type"].startswith("application/json")
                detail = r.json()["detail"]
                assert "disk is full" in detail and "not stored" in detail and detail.endswith("."), detail
                # no row, no file, no temp file; the space is free again
                assert [d["id"] for d in http.get("/api/documents").json()] == [small["id"]]
                assert db_rows(data_dir, "SELECT count(*) FROM documents") == [(1,)]
                files = sorted(p.name for p in blobs.rglob("*") if p.is_file())
                assert files == sorted(["filler.bin", small["sha256"]]), files
                assert free_bytes(blobs) == before
                # the service goes on: small uploads still fit, reads work
                other = upload(http, "bakery.txt", BAKERY)
                assert http.get(f"/api/documents/{other['id']}/sections").status_code == 200
                assert http.get("/api/health").status_code == 200
                filler.unlink()
                assert upload(http, "big.txt", big)["n_sections"] >= 1  # once there is room again
        finally:
            server.stop()
        assert_store_consistent(data_dir)


def _service(data_dir: Path, db_url: str | None = None) -> DocumentService:
    settings = Settings(data_dir=data_dir, database_url=db_url)
    migrate(settings.resolved_database_url)
    return DocumentService(settings, Database(settings.resolved_database_url), BlobStore(settings.blobs_dir))


def test_no_inodes_left_or_a_full_database_is_507_too(tmp_path: Path) -> None:
    # a. the blob folder cannot even get a new shard folder: no inodes left (mkdir fails, not the write)
    with tmpfs(tmp_path / "data" / "blobs", "size=2m,nr_inodes=2") as blobs:
        service = _service(tmp_path / "data")
        (blobs / "x").mkdir()  # the root and this take the two inodes
        with pytest.raises(StorageFull, match="disk is full"):
            service.ingest("garden.txt", GARDEN)
        assert service.list_documents() == [] and [p for p in blobs.rglob("*") if p.is_file()] == []
        service.db.dispose()

    # b. the database's disk is full: SQLite's "database or disk is full" is a 507, the stored file goes
    with tmpfs(tmp_path / "db", "size=1m") as db_dir:
        service = _service(tmp_path / "data2", f"sqlite:///{db_dir / 'docqa.sqlite3'}")
        assert service.list_documents() == []  # opens the WAL and its index while there is room
        filler = fill(db_dir, 0)
        text = "".join(f"Clause {n}: the tenant keeps the garden tidy and the gate locked.\n" for n in range(3000))
        with pytest.raises(StorageFull, match="disk is full"):
            service.ingest("lease.txt", text.encode())
        assert service.list_documents() == []  # reads still work
        assert service.blobs.all_hashes() == []  # the file stored before the row was removed again
        filler.unlink()
        assert service.ingest("lease.txt", text.encode()).created
        service.db.dispose()


def test_postgresql_full_disk_is_507_and_an_unreachable_server_503(tmp_path: Path) -> None:
    """PostgreSQL's data on a real 96 MB tmpfs (its WAL on the normal disk): a full disk is 507 with the
    sentence and stores nothing; a server that is down is 503 with a sentence and Retry-After, health says
    so, and the service recovers by itself once the server is back."""
    root = Path(tempfile.mkdtemp(prefix="docqa-pgfull-"))
    user = run_as()
    owner = f",uid={user.pw_uid},gid={user.pw_gid}" if user is not None else ""
    try:
        with tmpfs(root / "cluster", f"size=96m,mode=0700{owner}") as pgdata:
            cluster = Cluster(root=root, initdb_args=(f"--waldir={root / 'wal'}",))
            try:
                cluster.start()
                url = cluster.url(cluster.create_database())
                settings = Settings(data_dir=tmp_path / "data", database_url=url, rate_uploads="0")
                with TestClient(create_app(settings), base_url=LOOPBACK) as c:
                    small = c.post("/api/documents", files={"file": ("garden.txt", GARDEN, "text/plain")}).json()
                    filler = fill(pgdata, 256 * 1024)
                    big = "".join(f"Line {n}: the tenant pays the rent on the first day of the month.\n"
                                  for n in range(20000)).encode()  # ~1.3 MB of section text
                    r = c.post("/api/documents", files={"file": ("big.txt", big, "text/plain")})
                    assert r.status_code == 507, r.text
                    assert "disk is full" in r.json()["detail"] and r.json()["detail"].endswith(".")
                    assert [d["id"] for d in c.get("/api/documents").json()] == [small["id"]]  # reads go on
                    assert blob_files(settings.data_dir) == [small["sha256"]]  # the file went with the row
                    filler.unlink()
                    assert c.post("/api/documents", files={"file": ("big.txt", big, "text/plain")}).status_code == 201

                    cluster.kill()
                    for r in (c.get("/api/documents"),
                              c.post("/api/documents", files={"file": ("b.txt", BAKERY, "text/plain")})):
                        assert r.status_code == 503, r.text
                        assert "database server cannot be reached" in r.json()["detail"], r.text
                        assert r.headers["retry-after"] == "5"
                    health = c.get("/api/health")
                    assert health.status_code == 503 and health.json()["status"] == "unavailable"
                    assert "cannot be reached" in health.json()["details"]["database"]["error"]
                    cluster.restart()
                    assert len(c.get("/api/documents").json()) == 2  # the pool reconnects by itself
                    assert c.get("/api/health").json()["status"] == "ok"
                assert len(blob_files(settings.data_dir)) == 2
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- 4. the KV-state folder deleted or corrupted under a running app --------------------------------------


def test_state_cache_deleted_or_corrupted_while_running(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", seed=1)
    state = settings.state_dir
    body = {"question": "What is the tool shed code?", "max_tokens": 4}

    def ask(client: TestClient, sid: str) -> dict[str, Any]:
        r = client.post(f"/api/sessions/{sid}/questions", json=body)
        assert r.status_code == 200, r.text  # never a 500: the cache is only ever a shortcut
        settled(client)  # the snapshot is written after the answer
        return r.json()["timings"]

    with recorded("docqa.engine.local.state_cache", logging.WARNING) as warned, \
            TestClient(create_app(settings), base_url=LOOPBACK) as client:
        a = client.post("/api/documents", files={"file": ("garden.txt", GARDEN, "text/plain")}).json()["id"]
        b = client.post("/api/documents", files={"file": ("bakery.txt", BAKERY, "text/plain")}).json()["id"]
        sa, sb = (client.post("/api/sessions", json={"document_ids": [d]}).json()["id"] for d in (a, b))
        assert ask(client, sa)["prefix_source"] == "evaluated"
        (snap_a,) = state.glob("*.kv")
        assert ask(client, sb)["prefix_source"] == "evaluated"  # the context now holds b
        (snap_b,) = set(state.glob("*.kv")) - {snap_a}

        # a. a snapshot replaced by garbage of the same size, and a sidecar by valid JSON of the wrong
        #    shape: detected, discarded and rebuilt, never loaded
        size = snap_a.stat().st_size
        snap_a.write_bytes(os.urandom(size))
        garbage = snap_a.read_bytes()
        snap_b.with_suffix(".json").write_text("123")
        t = ask(client, sa)
        assert t["prefix_source"] == "evaluated" and t["prefill_tokens"] > 50, t  # only the instructions were resident
        assert any("discarding damaged KV snapshot" in w for w in warned), warned
        assert snap_a.stat().st_size == size and snap_a.read_bytes() != garbage
        assert json.loads(snap_a.with_suffix(".json").read_text())["size"] == size
        assert ask(client, sb)["prefix_source"] == "evaluated"
        assert json.loads(snap_b.with_suffix(".json").read_text())["n_tokens"] > 0

        # b. the whole folder deleted: the document is read again, and its snapshot written again
        shutil.rmtree(state)
        t = ask(client, sa)
        assert t["prefix_source"] == "evaluated" and t["prefill_tokens"] > 50, t
        assert snap_a.is_file() and snap_a.with_suffix(".json").is_file()

        # c. the folder replaced by a file, so nothing can be saved: answered anyway, with a warning
        shutil.rmtree(state)
        state.write_bytes(b"not a folder")
        assert ask(client, sb)["prefix_source"] == "evaluated"
        assert any("could not save KV snapshot" in w for w in warned), warned
        assert state.is_file()

        sessions = [client.get(f"/api/sessions/{s}").json()["messages"] for s in (sa, sb)]
    assert [len(m) for m in sessions] == [6, 6]


# --- 5. the model file deleted or truncated under a running server --------------------------------------


def test_model_file_deleted_or_truncated_while_running(tmp_path: Path) -> None:
    original = Settings()
    from docqa.engine.models import ModelRegistry

    source = ModelRegistry(original).get(None).path
    model = tmp_path / "model" / "smol.gguf"
    model.parent.mkdir()
    shutil.copyfile(source, model)
    server = Server(tmp_path / "data", env={**SERVER_ENV, "DOCQA_MODEL": str(model)}).start()
    question = {"question": "What is the tool shed code?", "max_tokens": 4}

    def refused(r: httpx.Response, words: str) -> str:
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        detail = r.json()["detail"]
        assert "The model 'default' cannot be used" in detail and words in detail and detail.endswith("."), detail
        return detail

    def reported(http: httpx.Client, words: str) -> None:
        h = http.get("/api/health")
        assert h.status_code == 200, h.text
        m = h.json()["details"]["models"]["default"]
        assert m["ready"] is False and m["state"] == "unavailable" and words in m["error"], m
        assert words in http.get("/api/models").json()[0]["error"]

    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            doc = upload(http, "garden.txt", GARDEN)
            sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]

            # a. deleted before the first question (the model is loaded lazily: nothing holds it yet)
            model.unlink()
            refused(http.post(f"/api/sessions/{sid}/questions", json=question), "was removed")
            refused(http.post("/api/sessions", json={"document_ids": [doc["id"]]}), "was removed")
            reported(http, "was removed")
            assert upload(http, "bakery.txt", BAKERY)["n_sections"] == 1  # uploads go on
            assert http.get("/api/documents").status_code == 200

            # b. put back (a copy: a new inode, the same model): usable again
            shutil.copyfile(source, model)
            assert http.get("/api/health").json()["details"]["models"]["default"]["ready"] is True
            r = http.post(f"/api/sessions/{sid}/questions", json=question)
            assert r.status_code == 200, r.text

            # c. truncated while its context is loaded (memory-mapped): refused, not SIGBUS
            with model.open("r+b") as fh:
                fh.truncate(model.stat().st_size // 2)
            detail = refused(http.post(f"/api/sessions/{sid}/questions", json=question), "truncated")
            assert f"{model.stat().st_size:,} bytes" in detail
            reported(http, "truncated")
            assert upload(http, "notes.txt", b"Bring gloves on Saturday.\n")["n_sections"] == 1
            assert server.proc is not None and server.proc.poll() is None  # still running
            messages = http.get(f"/api/sessions/{sid}").json()["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant"]  # only the one answered
    finally:
        server.stop()


def test_model_truncated_while_a_question_reads_with_weights_in_memory(tmp_path: Path) -> None:
    """With DOCQA_MMAP=false the weights are copied at load: a model file overwritten in place in the
    middle of an evaluation cannot crash docqa (memory-mapped, it would be SIGBUS); that question is
    answered, the next one is refused with the reason."""
    from docqa.engine.engine import AskOptions, Engine
    from docqa.engine.models import ModelRegistry, ModelUnavailable
    from docqa.store.models import Document, Section

    model = tmp_path / "smol.gguf"
    shutil.copyfile(ModelRegistry(Settings()).get(None).path, model)
    settings = Settings(data_dir=tmp_path / "data", model=str(model), mmap=False, n_batch=32, seed=1,
                        state_cache_bytes=0)
    registry = ModelRegistry(settings)
    spec = registry.get(None)
    engine = Engine(settings, registry)
    text = "\n".join(f"Bed {n} of the garden grows {('beans', 'kale', 'leeks')[n % 3]}." for n in range(1, 40))
    doc = Document(id="d", filename="beds.txt", kind="text")
    sources = [(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=39, text=text)])]
    plan = engine.plan(spec, sources)
    opts = AskOptions(max_tokens=8, sampling={"temperature": 0, "seed": 1})
    seen: list[dict[str, Any]] = []

    def truncate_midway(kind: str, payload: dict[str, Any]) -> None:
        if kind == "progress" and payload.get("tokens_done") and not seen:
            with model.open("r+b") as fh:
                fh.truncate(model.stat().st_size // 3)  # in place, as `cp new.gguf smol.gguf` does
            seen.append(payload)

    try:
        answer = engine.answer(spec, plan, sources, "What does bed 4 grow?", opts, on_event=truncate_midway)
        assert seen and seen[0]["tokens_done"] < seen[0]["tokens_total"], seen  # truncated in the middle of the reading
        assert answer.answer and answer.timings["prefill_tokens"] > seen[0]["tokens_done"]
        with pytest.raises(ModelUnavailable) as refused:
            engine.answer(spec, plan, sources, "What does bed 5 grow?", opts)
        assert refused.value.status_code == 503 and "truncated" in refused.value.detail
    finally:
        engine.close()
