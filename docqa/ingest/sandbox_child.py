"""Preloaded into the parse forkserver: import the parsers and load the tokenizer once, so every
forked parse process starts with them ready.

multiprocessing also re-runs the parent's `__main__` in every child it starts (Python 3.11's forkserver
never preloads it: it looks for a 'main_path' key that the preparation data calls 'init_main_from_path').
Under `docqa serve` that script only imports docqa.cli; importing it here makes that re-run a lookup
in sys.modules instead of half a second of imports (pydantic, click) in every parse.
"""

import docqa.cli  # noqa: F401
from docqa.ingest import parse  # noqa: F401
from docqa.tokens import encoding

encoding()
