"""Hostile use of a real `docqa serve` by two principals (alice, bob): issue 29's figures, as ratios within one run.

    python -m bench.hostile [--only fair,parses,scan,readahead,private,continue,lane,plans] [--tag before]

Each section starts its own server (two API keys) over a fresh data folder and reports what one
principal's work costs the other, or what outlives its purpose:
- fair: bob's time to first token alone, then while alice's question reads a long document: the ratio,
  and the same in alice's prefill slices (512 tokens at the rate her reading showed).
- parses: alice uploads --pdfs many-page PDFs at once: the most parse processes seen together, the
  statuses she got (429/503 with Retry-After is the fix), and bob's small upload's latency ratio.
- scan: alice uploads a --scan-pages scanned PDF (one image on every page) and leaves after 10 s: parse
  and tesseract processes left 5 s later; then again, staying up to --scan-wait s: the status and time.
- readahead: alice sends --read-aheads read-ahead calls over --ra-docs documents: places and jobs queued,
  then she deletes every document: read-ahead places still held 5 s later.
- private: alice asks about a document; bob uploads the same bytes: what his plan, read-ahead and answer
  say (`already_read`, `prefix_source`); both delete theirs: snapshot files left in the state folder.
- continue: a 16-token answer continued --continues times: each status (a 500 is the bug).
- lane: bob's plan alone, then while alice runs 4 plans over large fresh documents: the ratio.
- plans: a first and a second plan over one large document (cache), and bob's listing while alice
  floods --plans plans (200 or 429).
Writes bench/results/hostile[_TAG].json. Ratios within one run, not absolute times (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"alice": "alice-bench-key-0123456789", "bob": "bob-bench-key-0123456789"}
ALICE, BOB = {"X-API-Key": KEYS["alice"]}, {"X-API-Key": KEYS["bob"]}
BASE_ENV = {"DOCQA_API_KEYS": ",".join(f"{n}:{k}" for n, k in KEYS.items()), "DOCQA_RATE_UPLOADS": "0",
            "DOCQA_RATE_QUESTIONS": "0", "DOCQA_MAX_SET_TOKENS": "4000000"}


def _lorem(n_bytes: int, seed: int) -> bytes:
    words = ["contract", "party", "term", "notice", "fee", "renewal", "clause", "liability", "payment", "annex"]
    out, size, i = [], 0, 0
    while size < n_bytes:
        line = f"{seed}-{i}: " + " ".join(words[(i * 7 + k * 3 + seed) % 10] for k in range(12)) + ".\n"
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()


class Bench:
    """One server with two principals, and the calls the sections share."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        import httpx

        from tests.browser import Server

        self.data_dir = Path(tempfile.mkdtemp(prefix="docqa-bench-hostile-")) / "data"
        self.server = Server(self.data_dir, env={**BASE_ENV, **(env or {})}).start(timeout=180)
        self.http = httpx.Client(base_url=self.server.url, timeout=900)

    def close(self) -> None:
        self.http.close()
        self.server.stop()

    def up(self, name: str, data: bytes, who: dict[str, str], media: str = "text/plain") -> str:
        r = self.http.post("/api/documents", files={"file": (name, data, media)}, headers=who)
        assert r.status_code in (200, 201), r.text
        return str(r.json()["id"])

    def session(self, ids: list[str], who: dict[str, str]) -> dict[str, Any]:
        r = self.http.post("/api/sessions", json={"document_ids": ids}, headers=who)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def ask(self, sid: str, who: dict[str, str], question: str, max_tokens: int = 8,
            on_event: Callable[[str, dict[str, Any]], None] | None = None, **extra: Any) -> dict[str, Any]:
        """A streamed question: its status, seconds to its first token (or its end), and its `done` answer."""
        import httpx

        started = time.perf_counter()
        out: dict[str, Any] = {"status": None, "first_token_s": None, "done": None, "error": None}
        body = {"question": question, "max_tokens": max_tokens, "sampling": {"temperature": 0}, **extra}
        with httpx.Client(base_url=self.server.url, timeout=900) as http, http.stream(
                "POST", f"/api/sessions/{sid}/questions", json=body,
                headers={**who, "accept": "text/event-stream"}) as r:
            out["status"] = r.status_code
            if r.status_code != 200:
                r.read()
                out["error"] = r.text[:300]
                return out
            event = ""
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:"):
                    data = json.loads(line.partition(":")[2])
                    if event in ("token", "thinking") and out["first_token_s"] is None:
                        out["first_token_s"] = time.perf_counter() - started
                    if on_event is not None:
                        on_event(event, data)
                    if event == "done":
                        out["done"] = data
                    elif event == "error":
                        out["error"] = data
        out["total_s"] = time.perf_counter() - started
        if out["first_token_s"] is None:
            out["first_token_s"] = out["total_s"]
        return out

    def health(self, who: dict[str, str] | None = None) -> dict[str, Any]:
        return dict(self.http.get("/api/health", headers=who or ALICE).json())

    def descendants(self) -> list[Any]:
        import psutil

        try:
            return list(psutil.Process(self.server.proc.pid).children(recursive=True))  # type: ignore[union-attr]
        except psutil.Error:
            return []

    def parse_processes(self) -> tuple[int, int]:
        """(parse children of the forkserver, tesseract processes) under the server now."""
        import psutil

        procs = self.descendants()
        forkservers = set()  # the server's own child; the parse children it forks share its command line
        for p in procs:
            try:
                if p.ppid() == self.server.proc.pid and "forkserver" in " ".join(p.cmdline()):  # type: ignore[union-attr]
                    forkservers.add(p.pid)
            except psutil.Error:
                pass
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


def section_fair(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench()
    try:
        small = b.up("note.txt", b"The pass key is 52817. Bob keeps it.\n", BOB)
        bob = b.session([small], BOB)["id"]
        idle = [b.ask(bob, BOB, "What is the pass key?")["first_token_s"] for _ in range(3)]
        long_id = b.up("long.txt", _lorem(args.long_bytes, 3), ALICE)
        alice = b.session([long_id], ALICE)
        reading = threading.Event()
        rates: list[float] = []

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "progress" and data.get("tokens_done"):
                reading.set()
                if data.get("tokens_per_s"):
                    rates.append(float(data["tokens_per_s"]))

        result: dict[str, Any] = {}

        def alice_asks() -> None:
            result.update(b.ask(alice["id"], ALICE, "Which clause comes last?", max_tokens=4, on_event=on_event))

        thread = threading.Thread(target=alice_asks)
        alice_started = time.perf_counter()
        thread.start()
        reading.wait(600)
        time.sleep(2.0)  # well inside her reading
        loaded = b.ask(bob, BOB, "What is the pass key?")
        bob_done_at = time.perf_counter() - alice_started
        thread.join()
        alice_total = time.perf_counter() - alice_started
        rate = statistics.median(rates) if rates else 0.0
        slice_s = 512 / rate if rate else None
        base = statistics.median(idle)
        timings = (result.get("done") or {}).get("timings") or {}
        return {
            "alice_prompt_tokens": alice["plan"].get("prompt_tokens"), "alice_read_tokens_per_s": round(rate, 1),
            "slice_s": round(slice_s, 3) if slice_s else None,
            "bob_first_token_idle_s": round(base, 3), "bob_first_token_during_s": round(loaded["first_token_s"], 3),
            "bob_ratio_to_idle": round(loaded["first_token_s"] / base, 2),
            "bob_extra_in_slices": round((loaded["first_token_s"] - base) / slice_s, 2) if slice_s else None,
            "bob_answered_before_alice": bob_done_at < alice_total,
            "alice_total_s": round(alice_total, 2), "alice_yields": timings.get("yields", 0),
            "alice_status": result.get("status"),
        }
    finally:
        b.close()


def section_parses(args: argparse.Namespace) -> dict[str, Any]:
    from tests.builders import make_many_page_pdf

    b = Bench()
    try:
        pdfs = [make_many_page_pdf(args.pdf_pages, text=f"Page of report {i}. " * 20) for i in range(args.pdfs)]
        baseline = []
        for i in range(3):
            started = time.perf_counter()
            b.up(f"bob-{i}.txt", f"Bob's note {i}.\n".encode(), BOB)
            baseline.append(time.perf_counter() - started)
        statuses: list[int] = []
        retry: list[str] = []
        peak = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], b.parse_processes()[0])
                time.sleep(0.1)

        def upload(i: int) -> None:
            import httpx

            r = httpx.post(b.server.url + "/api/documents", headers=ALICE, timeout=900,
                           files={"file": (f"report-{i}.pdf", pdfs[i], "application/pdf")})
            statuses.append(r.status_code)
            if r.status_code in (429, 503):
                retry.append(r.headers.get("retry-after", ""))

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(args.pdfs)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(1.0)
        loaded = []
        for i in range(3):
            t0 = time.perf_counter()
            b.up(f"bob-busy-{i}.txt", f"Bob's busy note {i}.\n".encode(), BOB)
            loaded.append(time.perf_counter() - t0)
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        return {
            "pdfs": args.pdfs, "pdf_pages": args.pdf_pages, "peak_parse_processes": peak[0],
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "retry_after": sorted(set(retry)), "wall_s": round(wall, 2),
            "bob_upload_idle_s": round(statistics.median(baseline), 4),
            "bob_upload_during_s": round(statistics.median(loaded), 4),
            "bob_upload_ratio": round(statistics.median(loaded) / statistics.median(baseline), 2),
        }
    finally:
        b.close()


def section_scan(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from tests.doc_builders import scan_image, scanned_pdf

    image = scan_image(["Invoice 1234", "Total due: 560 EUR", "Pay within thirty days."])
    pdf = scanned_pdf([image] * args.scan_pages)
    b = Bench()
    out: dict[str, Any] = {"pages": args.scan_pages, "pdf_bytes": len(pdf)}
    try:
        try:
            httpx.post(b.server.url + "/api/documents", headers=ALICE, timeout=10,
                       files={"file": ("scan.pdf", pdf, "application/pdf")})
            out["left_status"] = "answered within 10 s"
        except httpx.TimeoutException:
            out["left_status"] = "client left after 10 s"
        out["processes_at_leave"] = list(b.parse_processes())
        time.sleep(5)
        out["processes_5s_after_leave"] = list(b.parse_processes())  # [parse children, tesseract]
        # let a leftover parse end before the second try (it would share the cores)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(b.parse_processes()):
            time.sleep(1)
        out["processes_65s_after_leave"] = list(b.parse_processes())
        started = time.perf_counter()
        try:
            r = httpx.post(b.server.url + "/api/documents", headers=ALICE, timeout=args.scan_wait,
                           files={"file": ("scan.pdf", pdf, "application/pdf")})
            out["stay_status"], out["stay_detail"] = r.status_code, r.json().get("detail")
        except httpx.TimeoutException:
            out["stay_status"], out["stay_detail"] = None, f"no answer within {args.scan_wait} s"
        out["stay_s"] = round(time.perf_counter() - started, 2)
        return out
    finally:
        b.close()


def section_readahead(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    b = Bench()
    try:
        ids = [b.up(f"ra-{i}.txt", _lorem(args.ra_bytes, 100 + i), ALICE) for i in range(args.ra_docs)]
        rss0 = psutil.Process(b.server.proc.pid).memory_info().rss  # type: ignore[union-attr]
        statuses: list[int] = []
        started = time.perf_counter()
        for n in range(args.read_aheads):
            chosen = [ids[(n * 7 + k) % len(ids)] for k in range(1 + n % 3)]
            r = b.http.post("/api/read-ahead", json={"document_ids": chosen}, headers=ALICE)
            statuses.append(r.status_code)
        calls_s = time.perf_counter() - started
        model = b.health()["details"]["models"]["default"]
        classes = model.get("classes", {}).get("read_ahead", {})
        rss1 = psutil.Process(b.server.proc.pid).memory_info().rss  # type: ignore[union-attr]
        for i in ids:
            b.http.delete(f"/api/documents/{i}", headers=ALICE)
        time.sleep(5)
        after = b.health()["details"]["models"]["default"]
        return {
            "calls": args.read_aheads, "documents": args.ra_docs, "calls_s": round(calls_s, 2),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "places_queued": classes.get("places"), "jobs_queued": classes.get("queued_jobs"),
            "server_rss_growth_mb": round((rss1 - rss0) / 1e6, 1),
            "places_5s_after_deleting_all": after.get("classes", {}).get("read_ahead", {}).get("places"),
            "phase_5s_after_deleting_all": (after.get("runner") or {}).get("phase"),
        }
    finally:
        b.close()


def _snapshots(data_dir: Path) -> int:
    state = data_dir / "state"
    return sum(1 for p in state.rglob("*") if p.is_file()) if state.exists() else 0


def section_private(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench()
    try:
        secret = _lorem(args.private_bytes, 7) + b"Confidential: the merger closes on 12 March.\n"
        a_doc = b.up("merger.txt", secret, ALICE)
        a_sid = b.session([a_doc], ALICE)["id"]
        asked = b.ask(a_sid, ALICE, "When does the merger close?")
        time.sleep(3)  # the snapshot is written after the answer
        snapshots_after_alice = _snapshots(b.data_dir)
        b_doc = b.up("merger.txt", secret, BOB)
        wrong = b.up("guess.txt", _lorem(args.private_bytes, 8), BOB)
        plan = b.http.post("/api/plan", json={"document_ids": [b_doc]}, headers=BOB).json()
        plan_wrong = b.http.post("/api/plan", json={"document_ids": [wrong]}, headers=BOB).json()
        ra = b.http.post("/api/read-ahead", json={"document_ids": [b_doc]}, headers=BOB).json()
        b_sid = b.session([b_doc], BOB)["id"]
        bob_answer = b.ask(b_sid, BOB, "When does the merger close?")
        timings = (bob_answer.get("done") or {}).get("timings") or {}
        for who, doc in ((ALICE, a_doc), (BOB, b_doc), (BOB, wrong)):
            b.http.delete(f"/api/documents/{doc}", headers=who)
        time.sleep(2)
        return {
            "alice_status": asked["status"], "snapshots_after_alice": snapshots_after_alice,
            "bob_plan_already_read": plan.get("already_read"), "bob_plan_snapshot": plan.get("snapshot"),
            "bob_wrong_guess_already_read": plan_wrong.get("already_read"),
            "bob_read_ahead_state": ra.get("state"), "bob_read_ahead_reason": ra.get("reason"),
            "bob_prefix_source": timings.get("prefix_source"), "bob_cached_tokens": timings.get("cached_tokens"),
            "snapshot_files_after_every_delete": _snapshots(b.data_dir),
        }
    finally:
        b.close()


def section_continue(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench()
    try:
        doc = b.up("story.txt", _lorem(args.continue_bytes, 11), ALICE)
        sid = b.session([doc], ALICE)["id"]
        first = b.ask(sid, ALICE, "Write out every clause of the document, one per line.",
                      max_tokens=args.continue_tokens)
        statuses = [first["status"] if not first["error"] else f"{first['status']} {first['error']}"]
        for _ in range(args.continues):
            r = b.ask(sid, ALICE, "", max_tokens=args.continue_tokens, continue_answer=True)
            statuses.append(r["status"] if not r["error"] else f"{r['status']} {str(r['error'])[:160]}")
            if r["status"] != 200 or r["error"]:
                break
        return {"max_tokens": args.continue_tokens, "continues_tried": len(statuses) - 1, "statuses": statuses,
                "any_500": any(str(s).startswith("500") or "500" in str(s)[:4] for s in statuses)}
    finally:
        b.close()


def section_lane(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    b = Bench()
    try:
        small = b.up("bob.txt", b"Bob's only note.\n", BOB)

        def bob_plan() -> float:
            t0 = time.perf_counter()
            r = b.http.post("/api/plan", json={"document_ids": [small]}, headers=BOB)
            assert r.status_code == 200, r.text
            return time.perf_counter() - t0

        idle = [bob_plan() for _ in range(5)]
        fresh = [b.up(f"alice-{i}.txt", _lorem(args.doc_bytes, 20 + i), ALICE) for i in range(4)]
        threads = [threading.Thread(target=lambda d=d: httpx.post(
            b.server.url + "/api/plan", json={"document_ids": [d]}, headers=ALICE, timeout=900)) for d in fresh]
        for t in threads:
            t.start()
        time.sleep(0.3)
        loaded = [bob_plan() for _ in range(3)]
        for t in threads:
            t.join()
        return {"bob_plan_idle_s": round(statistics.median(idle), 4),
                "bob_plan_during_s": round(statistics.median(loaded), 4),
                "bob_plan_ratio": round(statistics.median(loaded) / statistics.median(idle), 2)}
    finally:
        b.close()


def _listing(http: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert http.get("/api/documents").status_code == 200
        times.append(time.perf_counter() - started)
    return times


def section_plans(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    b = Bench()
    try:
        large = b.up("large.txt", _lorem(args.doc_bytes, 1), ALICE)
        plans = []
        for _ in range(2):
            started = time.perf_counter()
            r = b.http.post("/api/plan", json={"document_ids": [large]}, headers=ALICE)
            assert r.status_code == 200, r.text
            plans.append({"wall_s": round(time.perf_counter() - started, 4),
                          "server_timing": r.headers["server-timing"], "prompt_tokens": r.json()["prompt_tokens"]})
        for i in range(40):
            b.up(f"bob-{i}.txt", f"Bob's note {i}.\n".encode(), BOB)
        fresh = b.up("fresh.txt", _lorem(args.doc_bytes, 2), ALICE)
        with httpx.Client(base_url=b.server.url, headers=BOB, timeout=600) as bob:
            baseline = _listing(bob, 30)
            statuses: list[int] = []
            retry: list[str] = []

            def plan() -> None:
                r = httpx.post(b.server.url + "/api/plan", json={"document_ids": [fresh]}, headers=ALICE, timeout=600)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    retry.append(r.headers.get("retry-after", ""))

            threads = [threading.Thread(target=plan) for _ in range(args.plans)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            loaded = _listing(bob, 30)
            for t in threads:
                t.join()
            flood_s = time.perf_counter() - started
        p50 = statistics.median
        return {
            "document_bytes": args.doc_bytes, "first_plan": plans[0], "second_plan": plans[1],
            "second_to_first": round(plans[1]["wall_s"] / plans[0]["wall_s"], 4),
            "concurrent_plans": args.plans,
            "plan_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "retry_after": sorted(set(retry)), "flood_wall_s": round(flood_s, 2),
            "listing_baseline_s": {"p50": round(p50(baseline), 4), "max": round(max(baseline), 4)},
            "listing_during_plans_s": {"p50": round(p50(loaded), 4), "max": round(max(loaded), 4)},
            "listing_ratio_p50": round(p50(loaded) / p50(baseline), 2),
        }
    finally:
        b.close()


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "fair": section_fair, "parses": section_parses, "scan": section_scan, "readahead": section_readahead,
    "private": section_private, "continue": section_continue, "lane": section_lane, "plans": section_plans,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--tag", default="", help="written to bench/results/hostile_TAG.json")
    parser.add_argument("--long-bytes", type=int, default=60_000, help="alice's long document (fair)")
    parser.add_argument("--pdfs", type=int, default=16)
    parser.add_argument("--pdf-pages", type=int, default=300)
    parser.add_argument("--scan-pages", type=int, default=2000)
    parser.add_argument("--scan-wait", type=float, default=90.0)
    parser.add_argument("--read-aheads", type=int, default=120)
    parser.add_argument("--ra-docs", type=int, default=30)
    parser.add_argument("--ra-bytes", type=int, default=6_000)
    parser.add_argument("--private-bytes", type=int, default=8_000)
    parser.add_argument("--continue-bytes", type=int, default=4_000)
    parser.add_argument("--continue-tokens", type=int, default=400)
    parser.add_argument("--continues", type=int, default=8)
    parser.add_argument("--doc-bytes", type=int, default=1_100_000)
    parser.add_argument("--plans", type=int, default=45)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.run import write

    results: dict[str, Any] = {"tag": args.tag}
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        started = time.perf_counter()
        try:
            results[name] = SECTIONS[name](args)
        except Exception as exc:  # noqa: BLE001 - one section's failure is reported, the others still run
            results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
        results[name]["section_s"] = round(time.perf_counter() - started, 1)
        print(name, json.dumps(results[name]), flush=True)
        write("hostile" + (f"_{args.tag}" if args.tag else ""), results, quiet=True)  # kept if a later one is killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
