"""Load test: many concurrent clients against a real `docqa serve` on 127.0.0.1, then a consistency audit.

    python -m bench.load                          # 50 clients, 15 s baseline + 60 s, ≤ 3,000 requests
                                                  #   → bench/results/load.json
    python -m bench.load --clients 20 --duration 20 --out /tmp/load.json
    python -m bench.load --instances 2 --postgresql   # two servers on one throwaway PostgreSQL server and
                                                  #   one data folder, requests round-robin between them

Each client loops until the wall-clock budget or the request budget is spent, picking at random:
document listings, one document, section pages, health, unique uploads (text, Markdown, PDF),
"churn" uploads of a few fixed files (201 or 200 for the same bytes) with deletes of them, and
questions (max_tokens small; a third streamed as Server-Sent Events) over a few sessions. A 503
(model queue full) is the intended back-pressure: the client backs off briefly and goes on.

Measured: the latency of every non-model endpoint, split by whether a question was in flight (the
model busy generating) when the request started, against a baseline phase of the same mix without
questions (`--baseline` seconds first): p50/p95/p99 per endpoint; the count of every status per
endpoint; 503s. Then the server is stopped and the audit runs; every finding is listed
under `problems` (empty means the run is clean):

- no 5xx except 503 on questions (as JSON, before any stream: never as an error event after a
  stream has started), no unexpected 4xx, no transport errors or timeouts;
- documents: no id returned by two 201s; every 200 (same bytes) names a document created before;
  GET /api/documents (on every instance) and the database rows are both exactly seed + 201s − 204s;
  each row's sections are all there; the blob folder holds exactly the rows' files and no temp file;
- answers: per session, messages alternate user/assistant, and the stored answers are exactly the
  answers clients got a 200 (or a streamed `done`) for: each once, none for a refused question.

Bounded: the request budget, the wall-clock budget, and a hard stop (`--grace`) for requests in
flight after it. Loopback only: the server binds 127.0.0.1 on a free port in a temp data folder.
Rate limits are switched off (DOCQA_RATE_*=0): this measures capacity, not the limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.run import machine

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
MODEL_ENDPOINTS = {"question", "question_stream"}

GARDEN = """Harbor Lane Community Garden: season notes

The garden opens on 12 March and closes on 30 October.
There are 48 raised beds; each bed rents for 35 euros per season.
The tool shed code is 4471 and it is changed every June.
Watering is allowed before 9 a.m. and after 6 p.m. only.
Compost is collected on Saturdays by Marta Jensen.
The waiting list currently has 17 families.
"""
BAKERY = """Crumb & Co. bakery: staff handbook

The bakery opens at 6 a.m. every day except Monday.
Sourdough is baked in the stone oven at 250 degrees.
The head baker is Tomas Varga.
Staff get one free loaf per shift.
"""
QUESTIONS = ["When does the garden open?", "What is the tool shed code?", "Who is the head baker?",
             "How much does a bed cost?", "When does the bakery open?", "Who collects the compost?"]
WEIGHTS = {"list": 22, "document": 6, "sections": 18, "health": 5, "upload": 14, "churn": 5, "delete": 5,
           "question": 25}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return round(s[k] * 1000, 1)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": _pct(values, 50), "p95_ms": _pct(values, 95), "p99_ms": _pct(values, 99),
            "max_ms": round(max(values) * 1000, 1) if values else None,
            "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else None}


@dataclass
class Record:
    op: str
    status: int | str  # HTTP status, or "timeout" / "error:<Name>"
    latency: float
    busy: bool  # a question was in flight when it started
    phase: str = "load"  # "baseline": the same mix without questions, before the load phase


@dataclass
class Ledger:
    """What clients were told, to audit the server's state against afterwards."""

    seed_ids: set[str] = field(default_factory=set)
    created: collections.Counter[str] = field(default_factory=collections.Counter)  # id → 201 count
    same_bytes: set[str] = field(default_factory=set)  # ids of 200 uploads
    deleted: collections.Counter[str] = field(default_factory=collections.Counter)  # id → 204 count
    stable_ids: list[str] = field(default_factory=list)  # never deleted: safe for reads
    churn_ids: list[str] = field(default_factory=list)
    answers: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: collections.defaultdict(list))
    timings: list[dict[str, Any]] = field(default_factory=list)  # of the answers clients got
    stream_problems: list[str] = field(default_factory=list)


class Load:
    def __init__(self, base: str | list[str], *, clients: int, duration_s: float, max_requests: int, max_tokens: int,
                 seed: int, grace_s: float, question_docs: int = 2) -> None:
        self.bases = [base] if isinstance(base, str) else list(base)
        self.base = self.bases[0]
        self.turn = 0  # client-side round robin over the instances
        self.clients = clients
        self.duration_s = duration_s
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.grace_s = grace_s
        self.question_docs = question_docs
        self.rng = random.Random(seed)
        self.records: list[Record] = []
        self.ledger = Ledger()
        self.sessions: list[str] = []
        self.issued = 0
        self.in_flight_questions = 0
        self.unique = 0
        self.churn_pool: list[tuple[str, bytes, str]] = []
        self.phase = "load"
        self.unfinished = 0
        self.pdf_pool: list[bytes] = []
        self.baseline_wall_s = 0.0

    # -- set-up -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Seed documents and sessions, and build the upload payloads (before the clock starts)."""
        with httpx.Client(base_url=self.base, timeout=120) as http:
            for name, text in (("garden.txt", GARDEN), ("bakery.txt", BAKERY)):
                r = http.post("/api/documents", files={"file": (name, text.encode(), "text/plain")})
                r.raise_for_status()
                self.ledger.seed_ids.add(r.json()["id"])
                self.ledger.stable_ids.append(r.json()["id"])
            for doc_id in self.ledger.stable_ids[: self.question_docs]:
                for _ in range(2):
                    r = http.post("/api/sessions", json={"document_ids": [doc_id]})
                    r.raise_for_status()
                    self.sessions.append(r.json()["id"])
        self.churn_pool = [(f"churn-{i}.md", f"# Churn {i}\n\nThis file is uploaded and deleted again and again "
                            f"({i}).\n".encode(), "text/markdown") for i in range(4)]
        try:
            from fpdf import FPDF
        except ImportError:  # fpdf2 comes with the test extras; without it the uploads are text only
            return
        for i in range(12):
            pdf = FPDF()
            pdf.set_font("helvetica", size=11)
            for p in range(2):
                pdf.add_page()
                pdf.cell(0, 8, f"Load test lease {i}, page {p + 1}: rent is {100 + i} euros a month.")
            self.pdf_pool.append(bytes(pdf.output()))

    # -- one request of each kind ------------------------------------------------------------------

    async def _request(self, http: httpx.AsyncClient, op: str, method: str, url: str,
                       **kw: Any) -> httpx.Response | None:
        busy = self.in_flight_questions > 0
        t0 = time.perf_counter()
        try:
            r = await http.request(method, self._next_base() + url, **kw)
        except httpx.TimeoutException:
            self.records.append(Record(op, "timeout", time.perf_counter() - t0, busy, self.phase))
            return None
        except httpx.HTTPError as exc:
            status = f"error:{type(exc).__name__}"
            self.records.append(Record(op, status, time.perf_counter() - t0, busy, self.phase))
            return None
        self.records.append(Record(op, r.status_code, time.perf_counter() - t0, busy, self.phase))
        return r

    def _next_base(self) -> str:
        self.turn += 1
        return self.bases[self.turn % len(self.bases)]

    def _payload(self) -> tuple[str, bytes, str]:
        self.unique += 1
        n = self.unique
        if self.pdf_pool and n % 5 == 0:
            return f"lease-{n}.pdf", self.pdf_pool.pop(), "application/pdf"
        body = "".join(f"Line {k} of upload {n}: the deposit is {n * 10 + k} euros.\n" for k in range(30))
        return (f"upload-{n}.md", f"# Upload {n}\n\n{body}".encode(), "text/markdown") if n % 2 else (
            f"upload-{n}.txt", body.encode(), "text/plain")

    async def op_upload(self, http: httpx.AsyncClient) -> None:
        name, data, ctype = self._payload()
        r = await self._request(http, "upload", "POST", "/api/documents", files={"file": (name, data, ctype)})
        if r is not None and r.status_code == 201:
            self.ledger.created[r.json()["id"]] += 1
            self.ledger.stable_ids.append(r.json()["id"])
        elif r is not None and r.status_code == 200:
            self.ledger.same_bytes.add(r.json()["id"])

    async def op_churn(self, http: httpx.AsyncClient) -> None:
        name, data, ctype = self.rng.choice(self.churn_pool)
        r = await self._request(http, "churn", "POST", "/api/documents", files={"file": (name, data, ctype)})
        if r is not None and r.status_code in (200, 201):
            doc_id = r.json()["id"]
            if r.status_code == 201:
                self.ledger.created[doc_id] += 1
            else:
                self.ledger.same_bytes.add(doc_id)
            self.ledger.churn_ids.append(doc_id)

    async def op_delete(self, http: httpx.AsyncClient) -> None:
        if not self.ledger.churn_ids:
            return await self.op_churn(http)
        doc_id = self.rng.choice(self.ledger.churn_ids)
        r = await self._request(http, "delete", "DELETE", f"/api/documents/{doc_id}")
        if r is not None and r.status_code == 204:
            self.ledger.deleted[doc_id] += 1
        return None

    async def op_list(self, http: httpx.AsyncClient) -> None:
        await self._request(http, "list", "GET", "/api/documents")

    async def op_document(self, http: httpx.AsyncClient) -> None:
        await self._request(http, "document", "GET", f"/api/documents/{self.rng.choice(self.ledger.stable_ids)}")

    async def op_sections(self, http: httpx.AsyncClient) -> None:
        doc_id = self.rng.choice(self.ledger.stable_ids)
        await self._request(http, "sections", "GET", f"/api/documents/{doc_id}/sections", params={"limit": 20})

    async def op_health(self, http: httpx.AsyncClient) -> None:
        await self._request(http, "health", "GET", "/api/health")

    async def op_question(self, http: httpx.AsyncClient) -> float:
        """Returns how long to back off (after a 503)."""
        sid = self.rng.choice(self.sessions)
        body = {"question": self.rng.choice(QUESTIONS), "max_tokens": self.max_tokens}
        stream = self.rng.random() < 1 / 3
        self.in_flight_questions += 1
        try:
            if stream:
                return await self._stream(http, sid, body)
            r = await self._request(http, "question", "POST", f"/api/sessions/{sid}/questions", json=body)
        finally:
            self.in_flight_questions -= 1
        if r is not None and r.status_code == 200:
            self.ledger.answers[sid].append((body["question"], r.json()["answer"]))
            self.ledger.timings.append(r.json()["timings"])
        if r is not None and r.status_code == 503:
            return min(2.0, float(r.headers.get("retry-after", "1")))
        return 0.0

    async def _stream(self, http: httpx.AsyncClient, sid: str, body: dict[str, Any]) -> float:
        busy = self.in_flight_questions > 1
        t0 = time.perf_counter()
        status: int | str
        try:
            async with http.stream("POST", f"{self._next_base()}/api/sessions/{sid}/questions", json=body,
                                   headers={"accept": "text/event-stream"}) as r:
                status = r.status_code
                if r.status_code != 200:
                    await r.aread()
                    self.records.append(Record("question_stream", status, time.perf_counter() - t0, busy))
                    return min(2.0, float(r.headers.get("retry-after", "1"))) if status == 503 else 0.0
                events: list[tuple[str, str]] = []
                event = ""
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:") and event in ("done", "error"):
                        events.append((event, line.partition(":")[2].strip()))
        except httpx.TimeoutException:
            self.records.append(Record("question_stream", "timeout", time.perf_counter() - t0, busy))
            return 0.0
        except httpx.HTTPError as exc:
            status = f"error:{type(exc).__name__}"
            self.records.append(Record("question_stream", status, time.perf_counter() - t0, busy))
            return 0.0
        ends = [e for e in events if e[0] in ("done", "error")]
        if len(ends) != 1:
            self.ledger.stream_problems.append(f"a stream ended with {len(ends)} done/error events: {ends[:3]}")
            status = "stream:bad-end"
        elif ends[0][0] == "done":
            done = json.loads(ends[0][1])
            self.ledger.answers[sid].append((body["question"], done["answer"]))
            self.ledger.timings.append(done["timings"])
        else:
            payload = json.loads(ends[0][1])
            status = f"stream-error:{payload.get('status_code')}"
        self.records.append(Record("question_stream", status, time.perf_counter() - t0, busy))
        return 0.0

    # -- the clients ----------------------------------------------------------------------------------

    async def client(self, http: httpx.AsyncClient, deadline: float, mix: dict[str, int]) -> None:
        ops = list(mix)
        weights = [mix[o] for o in ops]
        while time.monotonic() < deadline and self.issued < self.max_requests:
            self.issued += 1
            op = self.rng.choices(ops, weights)[0]
            backoff = 0.0
            if op == "question":
                backoff = await self.op_question(http)
            else:
                await getattr(self, f"op_{op}")(http)
            await asyncio.sleep(backoff + self.rng.uniform(0.02, 0.15))  # think time

    async def run(self, baseline_s: float = 0.0) -> float:
        """The baseline phase (no questions, `baseline_s`), then the load phase; returns the latter's wall time."""
        # Idle connections are dropped by the client after 2 s, before uvicorn closes them (5 s): reusing one
        # the server is closing at that instant fails a POST with ReadError, an artefact of keep-alive, not a fault.
        limits = httpx.Limits(max_connections=self.clients + 4, max_keepalive_connections=self.clients + 4,
                              keepalive_expiry=2.0)
        timeout = httpx.Timeout(180.0, connect=10.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:  # URLs name their instance
            if baseline_s > 0:
                self.phase = "baseline"
                b0 = time.monotonic()
                deadline = b0 + baseline_s
                no_questions = {op: w for op, w in WEIGHTS.items() if op != "question"}
                await asyncio.gather(*(self.client(http, deadline, no_questions) for _ in range(self.clients)))
                self.baseline_wall_s = time.monotonic() - b0
                self.phase = "load"
            t0 = time.monotonic()
            deadline = t0 + self.duration_s
            tasks = [asyncio.create_task(self.client(http, deadline, WEIGHTS)) for _ in range(self.clients)]
            done, pending = await asyncio.wait(tasks, timeout=self.duration_s + self.grace_s)
            for t in pending:  # the hard stop: requests still in flight past the grace period
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            self.unfinished = len(pending)
        return time.monotonic() - t0

    # -- audit ---------------------------------------------------------------------------------------

    def audit(self, base: str, data_dir: Path, database_url: str | None = None) -> tuple[list[str], dict[str, Any]]:
        problems: list[str] = []
        lg = self.ledger
        if self.unfinished:
            problems.append(f"{self.unfinished} client(s) still had a request in flight at the hard stop")
        for r in self.records:
            s = r.status
            if isinstance(s, str):  # a transport error, or an error event after a stream started: a
                problems.append(f"{r.op}: {s}")  # question is refused (503) before its stream, never after
                continue
            ok = {200, 201} if r.op in ("upload", "churn") else {204, 404} if r.op == "delete" else {200}
            if r.op in MODEL_ENDPOINTS:
                ok = {200, 503}
            if s == 429:
                continue  # a rate limit (switched off here): counted, not a fault
            if s not in ok:
                problems.append(f"{r.op}: unexpected status {s}")
        problems += lg.stream_problems
        twice = [i for i, n in lg.created.items() if n > 1]
        if twice:
            problems.append(f"{len(twice)} document id(s) were returned by two 201s: {twice[:3]}")
        unknown = lg.same_bytes - set(lg.created) - lg.seed_ids
        if unknown:
            problems.append(f"200 uploads named documents never created: {sorted(unknown)[:3]}")
        if any(n > 1 for n in lg.deleted.values()):
            problems.append("a document was deleted (204) twice")
        expected = (lg.seed_ids | set(lg.created)) - set(lg.deleted)

        for instance in self.bases if base in self.bases else [base]:  # a listing on any instance shows all
            with httpx.Client(base_url=instance, timeout=60) as http:
                listed = {d["id"] for d in http.get("/api/documents").json()}
                histories = {sid: http.get(f"/api/sessions/{sid}").json()["messages"] for sid in self.sessions}
            if listed != expected:
                problems.append(f"GET /api/documents on {instance} differs from the clients' 201s − 204s: missing "
                                f"{sorted(expected - listed)[:3]}, extra {sorted(listed - expected)[:3]}")
        db_rows, blob_problems = store_audit(data_dir, database_url)
        if set(db_rows) != expected:
            problems.append(f"Database documents differ from the clients' 201s − 204s: missing "
                            f"{sorted(expected - set(db_rows))[:3]}, extra {sorted(set(db_rows) - expected)[:3]}")
        problems += blob_problems

        n_answers = 0
        for sid, messages in histories.items():
            roles = [m["role"] for m in messages]
            if roles != ["user", "assistant"] * (len(roles) // 2) or len(roles) % 2:
                problems.append(f"session {sid}: messages do not alternate user/assistant: {roles[:8]}")
            stored = collections.Counter(
                (messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages) - 1, 2))
            got = collections.Counter(lg.answers.get(sid, []))
            n_answers += sum(got.values())
            if stored != got:
                problems.append(f"session {sid}: {sum(stored.values())} stored answers vs {sum(got.values())} "
                                f"answered with 200; differing: {list((stored - got) + (got - stored))[:2]}")
        audit = {"documents_expected": len(expected), "documents_listed": len(listed), "documents_in_sqlite":
                 len(db_rows), "documents_in_database": len(db_rows), "answers_200": n_answers,
                 "messages_stored": sum(len(m) for m in histories.values())}
        return problems, audit

    def report(self, wall_s: float) -> dict[str, Any]:
        by_op: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for r in self.records:
            by_op[r.op][str(r.status)] += 1
        ok = [r for r in self.records if r.op not in MODEL_ENDPOINTS and r.status in (200, 201, 204)]
        non_model = [r for r in ok if r.phase == "load"]
        baseline = [r for r in ok if r.phase == "baseline"]
        latency = {
            "non_model_while_generating": _summary([r.latency for r in non_model if r.busy]),
            "non_model_load_phase_model_idle": _summary([r.latency for r in non_model if not r.busy]),
            "non_model_baseline_no_questions": _summary([r.latency for r in baseline]),
            "reads_baseline_no_questions": _summary([r.latency for r in baseline
                                                     if r.op in ("list", "document", "sections", "health")]),
            "uploads_baseline_no_questions": _summary([r.latency for r in baseline if r.op in ("upload", "churn")]),
            "reads_while_generating": _summary([r.latency for r in non_model
                                                if r.busy and r.op in ("list", "document", "sections", "health")]),
            "uploads_while_generating": _summary([r.latency for r in non_model
                                                  if r.busy and r.op in ("upload", "churn")]),
            "per_endpoint_while_generating": {
                op: _summary([r.latency for r in non_model if r.busy and r.op == op])
                for op in sorted({r.op for r in non_model})},
            "questions_answered": _summary([r.latency for r in self.records
                                            if r.op in MODEL_ENDPOINTS and r.status == 200]),
            "questions_refused_503": _summary([r.latency for r in self.records if r.op in MODEL_ENDPOINTS
                                               and r.status in (503, "stream-error:503")]),
        }
        busy_share = sum(r.busy for r in non_model) / max(1, len(non_model))
        statuses = collections.Counter(str(r.status) for r in self.records)
        t = self.ledger.timings
        answers = {
            "n": len(t), "prefix_source": dict(collections.Counter(x.get("prefix_source") for x in t)),
            "mean_queue_s": round(statistics.fmean(x["queue_s"] for x in t), 2) if t else None,
            "mean_prefill_s": round(statistics.fmean(x["prefill_s"] for x in t), 2) if t else None,
            "mean_generate_s": round(statistics.fmean(x["generate_s"] for x in t), 2) if t else None,
        }
        n_baseline = sum(r.phase == "baseline" for r in self.records)
        return {
            "requests": len(self.records), "wall_s": round(wall_s, 1),
            "instances": len(self.bases),
            "requests_baseline_phase": n_baseline,
            "requests_per_s_baseline_phase": round(n_baseline / self.baseline_wall_s, 1)
            if self.baseline_wall_s else None,
            "requests_load_phase": sum(r.phase == "load" for r in self.records),
            "requests_per_s_load_phase": round(sum(r.phase == "load" for r in self.records) / wall_s, 1)
            if wall_s else None,
            "status_counts": dict(sorted(statuses.items())),
            "status_counts_by_endpoint": {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())},
            "model_503": statuses.get("503", 0) + statuses.get("stream-error:503", 0),
            "non_model_share_started_while_generating": round(busy_share, 3),
            "latency": latency,
            "answers": answers,
        }


def store_audit(data_dir: Path, database_url: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The documents' rows (id → sha256) and what is wrong between rows, sections and blob files; the database
    is the data folder's SQLite file unless `database_url` names another."""
    from sqlalchemy import create_engine, text

    problems: list[str] = []
    engine = create_engine(database_url or f"sqlite:///file:{data_dir / 'docqa.sqlite3'}?mode=ro&uri=true")
    try:
        with engine.connect() as con:
            rows = {i: sha for i, sha in con.execute(text("SELECT id, sha256 FROM documents"))}
            counts = con.execute(text(
                "SELECT d.id, d.n_sections, (SELECT count(*) FROM sections s WHERE s.document_id = d.id) "
                "FROM documents d")).all()
            orphans = con.execute(text(
                "SELECT count(*) FROM sections WHERE document_id NOT IN (SELECT id FROM documents)")).scalar()
            dup = con.execute(text(
                "SELECT principal, sha256, count(*) FROM documents GROUP BY principal, sha256 "
                "HAVING count(*) > 1")).all()
    finally:
        engine.dispose()
    bad = [(i, n, c) for i, n, c in counts if n != c]
    if bad:
        problems.append(f"{len(bad)} document(s) whose section rows do not match n_sections: {bad[:3]}")
    if orphans:
        problems.append(f"{orphans} section row(s) without their document")
    if dup:
        problems.append(f"the same bytes stored twice for one principal: {dup[:3]}")
    blobs = data_dir / "blobs"
    files = [p for p in blobs.rglob("*") if p.is_file()] if blobs.is_dir() else []
    temp = [p.name for p in files if p.name.startswith(".")]
    if temp:
        problems.append(f"temp file(s) left in the blob store: {temp[:3]}")
    names = {p.name for p in files if not p.name.startswith(".")}
    if names != set(rows.values()):
        problems.append(f"blob files differ from the rows: orphan files {sorted(names - set(rows.values()))[:3]}, "
                        f"rows without a file {sorted(set(rows.values()) - names)[:3]}")
    return rows, problems


def run(*, clients: int = 50, duration_s: float = 60.0, max_requests: int = 3000, queue_size: int = 4,
        max_tokens: int = 16, seed: int = 1, grace_s: float = 120.0, question_docs: int = 2, baseline_s: float = 0.0,
        data_dir: Path | None = None, env: dict[str, str] | None = None, instances: int = 1,
        database_url: str | None = None, postgresql: bool = False) -> dict[str, Any]:
    """Start `instances` servers on one data folder (and one database), load them round-robin, stop them, audit;
    returns the report (with `problems`). `postgresql`: on a throwaway PostgreSQL server (tests/pg.py)."""
    sys.path.insert(0, str(REPO))
    from tests.browser import Server

    cluster = None
    if postgresql and database_url is None:
        from tests.pg import Cluster

        cluster = Cluster().start()
        database_url = cluster.url(cluster.create_database())
    try:
        with tempfile.TemporaryDirectory(prefix="docqa-load-") as tmp:
            data = data_dir or Path(tmp) / "data"
            server_env = {"DOCQA_QUEUE_SIZE": str(queue_size), "DOCQA_RATE_UPLOADS": "0",
                          "DOCQA_RATE_QUESTIONS": "0",
                          "DOCQA_PRINCIPAL_CONCURRENCY": "1000",  # capacity, not the per-principal gate
                          "DOCQA_SEED": str(seed), **(env or {})}
            if database_url:
                server_env["DOCQA_DATABASE_URL"] = database_url
            servers = [Server(data, env=server_env) for _ in range(instances)]
            for n, server in enumerate(servers):
                server.log_path = data / f"serve-{n}.log"
            try:
                for server in servers:
                    server.start()
                load = Load([s.url for s in servers], clients=clients, duration_s=duration_s,
                            max_requests=max_requests, max_tokens=max_tokens, seed=seed, grace_s=grace_s,
                            question_docs=question_docs)
                load.prepare()
                wall = asyncio.run(load.run(baseline_s))
                report = load.report(wall)
                with httpx.Client(base_url=servers[0].url, timeout=30) as http:
                    report["health_after"] = http.get("/api/health").json()["details"]
                problems, audit = load.audit(servers[0].url, data, database_url)
            finally:
                for server in servers:
                    server.stop()
                log_text = "".join(s.log_path.read_text(errors="replace") for s in servers if s.log_path.exists())
            rows_after_restart, more = store_audit(data, database_url)  # again, once the servers stopped cleanly
            problems += [f"after stop: {p}" for p in more if p not in problems]
            for server in servers:
                if server.proc is not None and server.proc.returncode not in (0, None):
                    problems.append(f"a server exited with {server.proc.returncode}")
            tracebacks = log_text.count("Traceback")
            log_errors = [line for line in log_text.splitlines()
                          if any(w in line for w in ("Traceback", "ERROR", "Error:", "Exception"))][:40]
    finally:
        if cluster is not None:
            cluster.remove()
    if database_url:
        from docqa.store.db import public_url

        server_env["DOCQA_DATABASE_URL"] = public_url(database_url)
    report.update(
        benchmark="load",
        settings={"clients": clients, "duration_s": duration_s, "baseline_s": baseline_s, "max_requests": max_requests,
                  "queue_size": queue_size, "max_tokens": max_tokens, "seed": seed, "weights": WEIGHTS,
                  "question_docs": question_docs, "instances": instances,
                  "database": "postgresql" if database_url else "sqlite",
                  "server_env": server_env},
        machine=machine(),
        audit={**audit, "documents_after_stop": len(rows_after_restart)},
        server_log_tracebacks=tracebacks,
        server_log_errors=log_errors,
        problems=problems,
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--baseline", type=float, default=15.0,
                    help="seconds of the same mix without questions first, for comparison (default 15)")
    ap.add_argument("--max-requests", type=int, default=3000)
    ap.add_argument("--queue-size", type=int, default=4, help="DOCQA_QUEUE_SIZE of the server (default 4)")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--grace", type=float, default=120.0, help="hard stop for requests in flight after --duration")
    ap.add_argument("--instances", type=int, default=1, help="servers on one data folder and database (default 1)")
    ap.add_argument("--postgresql", action="store_true", help="on a throwaway PostgreSQL server (tests/pg.py)")
    ap.add_argument("--database-url", default=None, help="an existing database instead (DOCQA_DATABASE_URL)")
    ap.add_argument("--out", type=Path, default=None, help="default bench/results/load.json (load-multi.json "
                    "with several instances or PostgreSQL)")
    args = ap.parse_args(argv)
    if args.out is None:
        multi = args.instances > 1 or args.postgresql or args.database_url
        args.out = RESULTS / ("load-multi.json" if multi else "load.json")
    report = run(clients=args.clients, duration_s=args.duration, max_requests=args.max_requests,
                 queue_size=args.queue_size, max_tokens=args.max_tokens, seed=args.seed, grace_s=args.grace,
                 baseline_s=args.baseline, instances=args.instances, database_url=args.database_url,
                 postgresql=args.postgresql)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    lat = report["latency"]
    print(json.dumps({"requests": report["requests"], "status_counts": report["status_counts"],
                      "model_503": report["model_503"],
                      "non_model_while_generating": lat["non_model_while_generating"],
                      "non_model_baseline_no_questions": lat["non_model_baseline_no_questions"],
                      "problems": report["problems"]}, indent=2))
    print(f"wrote {args.out}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
