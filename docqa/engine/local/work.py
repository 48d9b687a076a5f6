"""The values that cross the pipe between the web process and a local model's runner process.

Plain, picklable dataclasses: what to read and generate (`Work`), how to sample (`Sampling`), what
came of it (`Generation`, the seam's result: backend.py), and the errors a runner reports back by code
(errors.py's one table), so the web process raises the same typed error the runner met.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docqa.engine.local.state_cache import ContextConfig
from docqa.engine.sampling import Sampling
from docqa.errors import DocqaError, RunnerError, from_code


class Yielded(Exception):
    """Raised in the runner when a job gives the model to higher-priority work at a slice or token;
    `info` says where it got to (see runner.ModelHost.run)."""

    def __init__(self, info: dict) -> None:
        super().__init__("yielded")
        self.info = info




@dataclass
class Work:
    """One job for the runner: make `prefix` resident (memory, snapshot or evaluation), then
    generate after `prefix + suffix`."""

    config: ContextConfig
    prefix: list[int]
    suffix: list[int]
    state_key: str
    max_tokens: int
    sampling: Sampling
    start_in_thinking: bool = False
    stream: bool = True
    progress: bool = True
    # Read-ahead (readahead.py): only make the prefix resident (at most `read_limit` tokens of it when
    # set) and snapshot it; nothing is generated. `evict_before`: its snapshot may evict only
    # snapshots last used before that time (time.time()).
    read_ahead: bool = False
    read_limit: int = 0
    evict_before: float | None = None
    # Prefill slice for work that may have to yield (batch items, read-ahead): a person's question waits
    # for at most one slice of it; 0 = the context's n_batch.
    slice_tokens: int = 0
    # A job that yielded while writing its answer resumes with the tokens it had generated.
    resume: list[int] = field(default_factory=list)


def runner_error(code: str, detail: str, extra: dict) -> DocqaError:
    """The typed error for what a runner reported (matched by code in errors.py's one table, never by text)."""
    return from_code(code, detail, extra, default=RunnerError)
