"""The values that cross the pipe between the web process and a model's runner process.

Plain, picklable dataclasses: what to read and generate (`Work`), how to sample (`Sampling`), what
came of it (`Generation`), and the errors a runner reports back by code (`RUNNER_ERRORS`), so the
web process raises the same typed error the runner met.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docqa.engine.sampling import Sampling
from docqa.engine.state_cache import ContextConfig
from docqa.errors import DocqaError, ModelUnavailable


class QueueFull(DocqaError):
    status_code = 503
    code = "busy"


class Cancelled(DocqaError):
    status_code = 499
    code = "cancelled"


class ContextAllocationFailed(DocqaError):
    status_code = 507
    code = "context_allocation_failed"


class ModelCrashed(DocqaError):
    """The model's runner process died under this question (a native fault, the OOM killer, a kill)."""

    status_code = 503
    code = "model_crashed"


class ModelFailed(DocqaError):
    """The runner kept crashing and is stopped until its model file changes or docqa restarts."""

    status_code = 503
    code = "model_failed"


class Yielded(Exception):
    """Raised in the runner when a job gives the model to higher-priority work at a slice or token;
    `info` says where it got to (see runner.ModelHost.run)."""

    def __init__(self, info: dict) -> None:
        super().__init__("yielded")
        self.info = info


class RunnerError(DocqaError):
    """Something the runner did not expect (a bug, not the model's fault); it stays up."""

    status_code = 500
    code = "runner_error"


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


@dataclass
class Generation:
    text: str = ""
    thinking: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    generate_s: float = 0.0
    generated_tokens: int = 0
    prefix_source: str = "none"  # memory | disk | evaluated | read-ahead
    read_ahead_tokens: int = 0  # with prefix_source "read-ahead": how many of the prefix's tokens it had read
    resumed_tokens: int = 0  # tokens this job kept across its yields (read before it gave way, not read again)
    yields: int = 0  # how often it gave the model to higher-priority work
    stop_reason: str = "eos"  # eos | length | loop (the local runner stopped a loop)
    thinking_open: bool = False
    notes: list[str] = field(default_factory=list)  # for the answer's notes (a remote retry on another server)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.generate_s if self.generate_s else 0.0


KNOWN_ERRORS: dict[str, type[DocqaError]] = {
    cls.code: cls for cls in (Cancelled, ContextAllocationFailed, ModelUnavailable, RunnerError)}


def runner_error(code: str, detail: str, extra: dict) -> DocqaError:
    """The typed error for what a runner reported (matched by code, never by message text)."""
    cls = KNOWN_ERRORS.get(code, RunnerError)
    return cls(detail, **extra)
