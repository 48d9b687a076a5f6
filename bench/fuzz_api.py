"""The long run of the schema-driven API fuzz: the same tests as CI (tests/test_schema_fuzz.py), with many
more examples per operation, and its outcomes counted into bench/results/fuzz_api.json.

    python -m bench.fuzz_api --examples 500 [--seed N]

Exits non-zero when any operation answered outside its schema or with a 5xx (pytest's exit status).
Only the standard library is imported at the top: multiprocessing re-runs this module in every parse
process an upload starts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.run import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TEST = "tests/test_schema_fuzz.py"  # the generated cases with their hostile variants, and the fixed hostile classes


class Outcomes:
    """A pytest plugin: which operations passed, and the first lines of each failure."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "call":
            return
        name = report.head_line.split("[", 1)[-1].rstrip("]")  # test_…[GET /api/health]
        if report.passed:
            self.passed.append(name)
        elif report.failed:
            self.failed[name] = "\n".join(str(report.longrepr).splitlines()[:40])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="examples per operation (default 500)")
    parser.add_argument("--seed", type=int, default=None, help="schemathesis seed (default: a new one each run)")
    args = parser.parse_args(argv)

    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    os.environ["DOCQA_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["DOCQA_FUZZ_SEED"] = str(args.seed)
    import pytest

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    outcomes = Outcomes()
    started = time.monotonic()
    code = pytest.main([TEST, "-q", "-p", "no:cacheprovider", "-o", "log_level=WARNING"], plugins=[outcomes])
    elapsed = time.monotonic() - started

    from tests import test_schema_fuzz

    operations: dict[str, Any] = {}
    totals: Counter[str] = Counter()
    slowest: dict[str, Any] = {"s": 0.0}
    for label, entry in sorted(test_schema_fuzz.STATS.items()):
        statuses = dict(sorted(entry["statuses"].items()))
        totals.update(entry["statuses"])
        operations[label] = {"cases": entry["cases"], "statuses": statuses, "slowest_s": entry["slowest_s"],
                             "passed": label.split(" [")[0] in outcomes.passed}
        if entry["slowest_s"] > slowest["s"]:
            slowest = {"s": entry["slowest_s"], "operation": label, "request": entry["slowest_case"]}
    data = {
        "benchmark": "fuzz_api",
        "machine": machine(),
        "examples_per_operation": args.examples,
        "seed": args.seed,
        "operations_passed": len(outcomes.passed),
        "operations_failed": len(outcomes.failed),
        "cases": sum(totals.values()),
        "statuses": dict(sorted(totals.items())),
        "server_errors": sum(n for s, n in totals.items() if s.startswith("5")),
        "wall_s": round(elapsed, 1),
        "slowest_request": slowest,
        "operations": operations,
        "failures": outcomes.failed,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_api.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k not in ("operations", "failures")}, indent=2))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
