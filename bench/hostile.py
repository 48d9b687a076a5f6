"""Expensive requests against a real `docqa serve`: plans paid once, and listings while one principal floods plans.

    python -m bench.hostile [--doc-bytes 1100000] [--plans 45]

1. A first and a second `POST /api/plan` over one large text document (default 1.1 MB): wall time of each,
   and the server's own `Server-Timing` (whether the token counts were computed or came from the cache).
2. Another principal's `GET /api/documents` latency alone (baseline), then while the first principal sends
   `--plans` concurrent plans over a set not counted yet: the listing's ratio to its baseline, and what the
   plans got (200 or 429 with Retry-After).
Writes bench/results/hostile.json. Ratios within one run, not absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"alice": "alice-bench-key-0123456789", "bob": "bob-bench-key-0123456789"}


def _lorem(n_bytes: int, seed: int) -> bytes:
    words = ["contract", "party", "term", "notice", "fee", "renewal", "clause", "liability", "payment", "annex"]
    out, size, i = [], 0, 0
    while size < n_bytes:
        line = f"{seed}-{i}: " + " ".join(words[(i * 7 + k * 3 + seed) % 10] for k in range(12)) + ".\n"
        out.append(line)
        size += len(line)
        i += 1
    return "".join(out).encode()


def _listing(http: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert http.get("/api/documents").status_code == 200
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc-bytes", type=int, default=1_100_000)
    parser.add_argument("--plans", type=int, default=45)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import httpx

    from bench.run import write
    from tests.browser import Server

    env = {"DOCQA_API_KEYS": ",".join(f"{n}:{k}" for n, k in KEYS.items()), "DOCQA_RATE_UPLOADS": "0",
           "DOCQA_RATE_QUESTIONS": "0", "DOCQA_MAX_SET_TOKENS": "4000000"}
    server = Server(Path(tempfile.mkdtemp(prefix="docqa-bench-hostile-")) / "data", env=env).start()
    alice = {"X-API-Key": KEYS["alice"]}
    try:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            def up(name: str, data: bytes, who: str) -> str:
                r = http.post("/api/documents", files={"file": (name, data, "text/plain")},
                              headers={"X-API-Key": KEYS[who]})
                assert r.status_code == 201, r.text
                return str(r.json()["id"])

            large = up("large.txt", _lorem(args.doc_bytes, 1), "alice")
            plans = []
            for _ in range(2):
                started = time.perf_counter()
                r = http.post("/api/plan", json={"document_ids": [large]}, headers=alice)
                assert r.status_code == 200, r.text
                plans.append({"wall_s": round(time.perf_counter() - started, 4),
                              "server_timing": r.headers["server-timing"], "prompt_tokens": r.json()["prompt_tokens"]})
            for i in range(40):
                up(f"bob-{i}.txt", f"Bob's note {i}.\n".encode(), "bob")
            fresh = up("fresh.txt", _lorem(args.doc_bytes, 2), "alice")
            with httpx.Client(base_url=server.url, headers={"X-API-Key": KEYS["bob"]}, timeout=600) as bob:
                baseline = _listing(bob, 30)
                statuses: list[int] = []
                retry: list[str] = []

                def plan() -> None:
                    r = httpx.post(server.url + "/api/plan", json={"document_ids": [fresh]}, headers=alice,
                                   timeout=600)
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
    finally:
        server.stop()
    p50 = statistics.median
    write("hostile", {
        "document_bytes": args.doc_bytes,
        "first_plan": plans[0], "second_plan": plans[1],
        "second_to_first": round(plans[1]["wall_s"] / plans[0]["wall_s"], 4),
        "concurrent_plans": args.plans, "plan_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "retry_after": sorted(set(retry)), "flood_wall_s": round(flood_s, 2),
        "listing_baseline_s": {"p50": round(p50(baseline), 4), "max": round(max(baseline), 4)},
        "listing_during_plans_s": {"p50": round(p50(loaded), 4), "max": round(max(loaded), 4)},
        "listing_ratio_p50": round(p50(loaded) / p50(baseline), 2),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
