"""Typed domain errors: each carries an HTTP status and a sentence a person understands.

The domain raises these; the web layer maps them to `{"status_code", "detail"}` in one place.
"""

from __future__ import annotations

from typing import Any


class DocqaError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DocqaError):
    status_code = 404
    code = "not_found"


class UnsupportedDocument(DocqaError):
    status_code = 415
    code = "unsupported_type"


class InvalidDocument(DocqaError):
    """The file is of a supported type but cannot be read (corrupt, encrypted, no text, unsafe)."""

    status_code = 422
    code = "invalid_document"


class DocumentTooLarge(DocqaError):
    status_code = 413
    code = "too_large"


class ParseLimitExceeded(DocqaError):
    """Parsing ran past its time or memory limit."""

    status_code = 422
    code = "parse_limit"


class StorageFull(DocqaError):
    status_code = 507
    code = "storage_full"


class InvalidRequest(DocqaError):
    status_code = 422
    code = "invalid_request"


class RateLimited(DocqaError):
    """Too many uploads or questions from one principal; `retry_after` (seconds) becomes Retry-After."""

    status_code = 429
    code = "rate_limited"


class ParsersBusy(DocqaError):
    """Every parse process this server allows is in use (DOCQA_PARSE_PROCESSES); `retry_after` in seconds."""

    status_code = 503
    code = "parsers_busy"


class DatabaseUnavailable(DocqaError):
    """The database server cannot be reached (refused, down, restarting): the operator's problem, retryable."""

    status_code = 503
    code = "database_unavailable"


class PasswordRequired(InvalidDocument):
    """An encrypted PDF and no password (or one that does not open it); the sentence says how to send one."""

    code = "password_required"


class OcrUnavailable(InvalidDocument):
    """A page needs OCR and this server has no Tesseract (or not the language asked for)."""

    code = "ocr_unavailable"


class BadRequest(DocqaError):
    """A request no client following the API would send (a foreign Host, JSON nested too deep)."""

    status_code = 400
    code = "bad_request"


class CrossSiteRequest(DocqaError):
    status_code = 403
    code = "cross_site"


class WrongContentType(DocqaError):
    status_code = 415
    code = "wrong_content_type"


class DocumentSetTooLarge(DocqaError):
    """The document set is larger than DOCQA_MAX_SET_TOKENS: refused at plan time with the numbers."""

    status_code = 422
    code = "document_set_too_large"


class ClientGone(DocqaError):
    """The client disconnected before its plan or session was ready; nothing was created (nobody reads this)."""

    status_code = 499
    code = "client_gone"


def short_id(value: str, limit: int = 40) -> str:
    """An id as a sentence may quote it: at most `limit` characters of it, so a huge id is not echoed back."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


class ModelUnavailable(DocqaError):
    """The model cannot be used now (its file is missing, changed or unreadable)."""

    status_code = 503
    code = "model_unavailable"


class RemoteUnavailable(DocqaError):
    """No server of a remote model answers (each named, with what happened)."""

    status_code = 503
    code = "remote_unavailable"


class RemoteRefused(DocqaError):
    """A remote server refused a request; its own message is quoted."""

    status_code = 502
    code = "remote_refused"


class RemoteStreamCut(DocqaError):
    """A remote server's stream ended before the answer did."""

    status_code = 502
    code = "remote_stream_cut"


# -- pulling models from a hub (docqa/pull.py) ---------------------------------------------------------


class Forbidden(DocqaError):
    """The principal may use the service but not this action (e.g. pulling models, DOCQA_MODEL_MANAGERS)."""

    status_code = 403
    code = "forbidden"


class Conflict(DocqaError):
    status_code = 409
    code = "conflict"


class HubNotFound(DocqaError):
    """The hub has no such repository, quantization or file."""

    status_code = 404
    code = "hub_not_found"


class HubGated(DocqaError):
    status_code = 403
    code = "hub_gated"


class HubOffline(DocqaError):
    status_code = 503
    code = "hub_offline"


class HubUnreachable(DocqaError):
    status_code = 502
    code = "hub_unreachable"


class ChecksumMismatch(DocqaError):
    """A downloaded file's sha256 is not the one the hub lists: it was deleted, never offered."""

    status_code = 502
    code = "checksum_mismatch"


class QueueFull(DocqaError):
    """The model's queue is full; Retry-After says when to come back."""

    status_code = 503
    code = "busy"


class Cancelled(DocqaError):
    status_code = 499
    code = "cancelled"


class ContextAllocationFailed(DocqaError):
    """llama.cpp could not create the planned context after all; the engine falls back to a smaller one."""

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


class RunnerError(DocqaError):
    """Something the runner did not expect (a bug, not the model's fault); it stays up."""

    status_code = 500
    code = "runner_error"


class ContextBudgetExceeded(DocqaError):
    """The document set does not fit this machine's memory in any mode: refused at plan time with the numbers."""

    status_code = 422
    code = "context_budget_exceeded"


class ModelFileError(DocqaError):
    """A file given as a model is not a GGUF docqa can read."""

    status_code = 422
    code = "bad_model"


class PullCancelled(DocqaError):
    status_code = 409
    code = "pull_cancelled"


class DocumentsGone(DocqaError):
    """A session's or batch's documents were deleted since it was made."""

    status_code = 409
    code = "documents_gone"


class PlanFailed(DocqaError):
    """A batch's stored plan says it could not be planned."""

    status_code = 422
    code = "plan_failed"


def _every(cls: type[DocqaError]) -> list[type[DocqaError]]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _every(sub)]


# The one code table: every docqa error by its code. A child process (the parse sandbox, a model's runner)
# sends (code, detail, extra) through its pipe, and the parent raises the same typed error from here.
CODES: dict[str, type[DocqaError]] = {cls.code: cls for cls in _every(DocqaError)}


def from_code(code: str, detail: str, extra: dict[str, Any] | None = None,
              default: type[DocqaError] = DocqaError) -> DocqaError:
    """The typed error a child process reported by `code` (`default` for a code this table lacks)."""
    return CODES.get(code, default)(detail, **(extra or {}))
