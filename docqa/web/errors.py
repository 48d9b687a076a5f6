"""The one place where errors become HTTP responses: `{"status_code", "detail"}` with a human sentence."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from docqa.errors import BadRequest, DocqaError, ModelUnavailable
from docqa.web.guard import JSON, body_media_type
from docqa.web.schemas import JSON_BODY_LIMIT
from docqa.web.sessions import without_paths

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


class DocqaRequest(Request[Any, Any, Any]):
    """Litestar's request, refusing JSON nested too deep for the decoder with a 400 and a sentence."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise BadRequest("The JSON body is nested too deeply to read; no request of this API nests more "
                             "than a few levels.") from None


def domain_error(request: Request, exc: DocqaError) -> Response:
    detail = exc.detail
    if isinstance(exc, ModelUnavailable):  # a sentence about a model file names the file, not its folder
        registry = getattr(request.app.state, "registry", None)
        detail = without_paths(detail, registry) if registry is not None else detail
    response = _json(exc.status_code, detail, exc.extra or None)
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
    if status == 400 and exc.detail == "Request Entity Too Large":
        # Litestar 2's multipart parser past its part or size limits: a 400 with a 413's words (its FIXME for
        # 3.0); it has no exception type of its own, so its text is the only sign.
        status = 413
        detail = ("The upload has more form fields than this server reads (the file in the field 'file', plus "
                  "password and ocr_langs), or a field over its size limit; nothing was stored.")
    elif status == 413:
        if body_media_type(request.scope.get("route_handler")) == JSON:
            detail = f"The request body is larger than the {JSON_BODY_LIMIT:,}-byte limit for JSON requests."
        else:
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
