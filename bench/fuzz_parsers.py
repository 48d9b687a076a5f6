"""The long run of the parser fuzz: many generated hostile PDFs and zips (tests/hostile_inputs.py) through
the real parse sandbox, counted into bench/results/fuzz_parsers.json.

    python -m bench.fuzz_parsers --cases 5000 [--seed 1] [--timeout 5] [--memory-mib 1024]

Every case must end as a parsed document or a DocqaError (413/415/422) naming the file, within the time
limit, and parse_upload must raise nothing else for the same bytes; the exit status is 1 when any did
not (each such case is listed with its seed and index: `tests.hostile_inputs.case_at(seed, index)`).

Only the standard library is imported at the top: multiprocessing re-runs this module in every parse
process it starts, so whatever it imported would be imported again for every case.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.run import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=5.0, help="parse wall-clock limit, seconds")
    parser.add_argument("--memory-mib", type=int, default=1024, help="parse address-space limit, MiB")
    args = parser.parse_args(argv)

    import logging
    import warnings

    sys.path.insert(0, str(ROOT))
    from docqa.ingest import ParseLimits
    from docqa.ingest.sandbox import parse_in_sandbox
    from tests.hostile_inputs import cases, run_case

    warnings.simplefilter("ignore")  # pypdf warns about every oddity of every mutated file
    logging.disable(logging.WARNING)
    limits = ParseLimits()
    parse_in_sandbox(b"warm up\n", "warm-up.txt", limits, timeout_s=60, memory_bytes=args.memory_mib << 20)

    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    by_label: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    started = time.monotonic()
    for index, case in enumerate(cases(args.seed, args.cases)):
        o = run_case(case, limits, timeout_s=args.timeout, memory_bytes=args.memory_mib << 20)
        outcomes[o.outcome] += 1
        by_label[o.label][o.outcome] += 1
        if o.error:
            errors[o.error] += 1
        if o.status:
            statuses[str(o.status)] += 1
        slowest = sorted([*slowest, {"index": index, "label": o.label, "size": o.size, "elapsed_s": o.elapsed_s,
                                     "outcome": o.outcome, "detail": o.detail[:160]}],
                         key=lambda s: -s["elapsed_s"])[:10]
        if o.problems:
            problems.append({"seed": args.seed, "index": index, "label": o.label, "size": o.size,
                             "problems": o.problems, "trace": o.trace[-1500:]})
        if (index + 1) % 250 == 0:
            print(f"{index + 1} cases, {time.monotonic() - started:.0f} s, {dict(outcomes)}, "
                  f"{len(problems)} problems", flush=True)
    elapsed = time.monotonic() - started

    data = {
        "benchmark": "fuzz_parsers",
        "machine": machine(),
        "seed": args.seed,
        "cases": args.cases,
        "limits": {"timeout_s": args.timeout, "memory_mib": args.memory_mib},
        "outcomes": dict(outcomes),
        "errors": dict(errors.most_common()),
        "statuses": dict(sorted(statuses.items())),
        "problems": len(problems),
        "wall_s": round(elapsed, 1),
        "cases_per_s": round(args.cases / elapsed, 1) if elapsed else None,
        "slowest": slowest,
        "by_generator": {label: dict(c) for label, c in sorted(by_label.items())},
        "problem_cases": problems[:50],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_parsers.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k not in ("by_generator", "problem_cases")}, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
