"""Ask the embedded model questions about the real set's documents; keep its raw answers for labelling.

    DOCQA_DATA_DIR=/tmp/labels-docqa python bench/grounding_real_model_runs.py [DOC ...]

With DOC names, only their questions are asked and the transcripts are appended.

Each question goes through `docqa ask DOC -q QUESTION --max-tokens 96` with
DOCQA_UNSUPPORTED_ANSWERS=show (so the model's own answer is printed, not a withheld notice) and one
llama.cpp thread (the machine is shared). The transcripts go to bench/grounding_real/model_raw.jsonl;
their sentences were then labelled by hand, like every other sentence, with phrasing "model"
(source/<doc>.txt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "grounding_real"
DOCQA = Path(sys.executable).parent / "docqa"
QUESTIONS = [
    ("MPL-2.0.txt", "Who is the license steward of the Mozilla Public License 2.0?"),
    ("MPL-2.0.txt", "Where must litigation relating to the MPL 2.0 be brought?"),
    ("Apache-2.0.txt", "What happens to my patent license if I sue someone over the Work?"),
    ("Apache-2.0.txt", "Does the Apache License let me use the Licensor's trademarks?"),
    ("GPL-3.txt", "How long does a written offer for the Corresponding Source have to remain valid?"),
    ("GPL-3.txt", "Can I charge money for copies of a GPL program?"),
    ("CC0-1.0.txt", "Does CC0 waive the Affirmer's patent rights?"),
    ("base-passwd-README.txt", "What is the next uid/gid allocation?"),
    ("base-passwd-README.txt",
     "Which uid and gid range does update-passwd keep consistent with the Debian master copies?"),
    ("man-db-FAQ.txt", "How much faster is man-db than man at a full-text search?"),
    ("dpkg-rootless-builds.txt", "What is the default value of Rules-Requires-Root?"),
    ("gpg-agent-README.Debian.txt", "How do I use gpg-agent as an ssh-agent?"),
    ("git-jump-README.txt", "What kinds of lists can git-jump generate?"),
    ("collabtive-install-readme-ar.txt", "ما هي متطلبات الخادم لتشغيل Collabtive؟"),
    ("kilo.c", "What does kilo do when I press Ctrl-C?"),
    ("git-resurrect.sh", "What does the -a option do?"),
]


def main() -> int:
    env = dict(os.environ, DOCQA_UNSUPPORTED_ANSWERS="show", DOCQA_N_THREADS="1")
    env.setdefault("DOCQA_DATA_DIR", "/tmp/labels-docqa")
    subprocess.run([str(DOCQA), "migrate"], env=env, check=True, capture_output=True)
    only = set(sys.argv[1:])
    out = (ROOT / "model_raw.jsonl").open("a" if only else "w", encoding="utf-8")
    for doc, question in QUESTIONS:
        if only and doc not in only:
            continue
        started = time.monotonic()
        run = subprocess.run(["nice", "-n", "10", str(DOCQA), "ask", str(ROOT / "docs" / doc), "-q", question,
                              "--max-tokens", "96"], env=env, capture_output=True, text=True, timeout=900)
        row = {"doc": doc, "question": question, "returncode": run.returncode, "stdout": run.stdout,
               "seconds": round(time.monotonic() - started, 1)}
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        print(json.dumps(row, ensure_ascii=False))
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
