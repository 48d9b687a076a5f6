"""The one place where errors become HTTP responses: `{"status_code", "detail"}` with a human sentence."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from docqa.errors import DocqaError

log = logging.getLogger(__name__)

_HTTP_SENTENCES = {
    400: "The request could not be understood.",
    401: "This server needs a valid API key.",
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The upload is larger than this server accepts.",
    415: "This content type is not accepted here.",
    429: "Too many requests; slow down and try again.",
}


def _json(status: int, detail: str, extra: object = None) -> Response:
    body: dict[str, object] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status, media_type=MediaType.JSON)


def domain_error(_: Request, exc: DocqaError) -> Response:
    response = _json(exc.status_code, exc.detail, exc.extra or None)
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    return response


def validation_error(_: Request, exc: ValidationException) -> Response:
    problems = exc.extra if isinstance(exc.extra, list) else []
    # Body problems come keyed "data" with the field named in the message; query/path ones by key.
    reasons = [
        str(p.get("message") or p.get("key")) if p.get("key") == "data" else f"{p.get('key')}: {p.get('message')}"
        for p in problems if isinstance(p, dict)
    ]
    detail = "The request is missing or has invalid fields" + (f": {'; '.join(reasons)}." if reasons else ".")
    return _json(422, detail, problems or None)


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail if exc.detail and not exc.detail.startswith(("Not Found", "Method Not Allowed")) else ""
    if status == 413:
        limit = request.app.state.settings.max_upload_bytes
        detail = f"The upload is larger than the {limit:,}-byte limit of this server; nothing was stored."
    response = _json(status, detail or _HTTP_SENTENCES.get(status, "The request failed."))
    if exc.headers:  # e.g. 405's Allow (RFC 9110 requires it)
        response.headers.update(exc.headers)
    return response


def unexpected_error(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _json(500, "Something went wrong inside docqa; the error was logged. Nothing was changed.")


EXCEPTION_HANDLERS = {
    DocqaError: domain_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
