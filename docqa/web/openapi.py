"""Make the OpenAPI document at /schema say what the API really answers.

Litestar documents each handler's success response and, for handlers with parameters, a 400
"validation" response; docqa's error mapping (web/errors.py) answers validation problems with 422
and domain refusals with their own statuses, all as `ErrorOut`. `document_error_responses(app)` adds
those, once, to every /api operation by rule (what can produce them) plus a short table of the
statuses only some use cases raise. tests/test_schema_fuzz.py checks the result against the running
app with schemathesis: every status and body a request can get must be declared.

`complete_allow_header` works around Litestar 2's automatic OPTIONS handler, which lists only the
methods of the first handler registered on a path (litestar-org/litestar#4169, fixed in v3).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from litestar import Litestar, Request, Router
from litestar.constants import RESERVED_KWARGS
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from docqa.web.access import PUBLIC, RATE
from docqa.web.costly import COSTLY
from docqa.web.schemas import ErrorOut

ERRORS: dict[int, str] = {
    400: "The body is not well-formed JSON or multipart form data, or is nested too deeply; or the Host header "
         "is not one this server answers to (DNS rebinding).",
    401: "No API key, or one this server does not know (only when DOCQA_API_KEYS is set).",
    403: "Sent by a web page on another site (Sec-Fetch-Site / Origin); or pulling models, which only "
         "DOCQA_MODEL_MANAGERS may (with API keys), or a gated repository on the hub.",
    404: "Nothing with that id (or not the caller's); or no such repository, quantization or file on the hub.",
    409: "A document of the session was deleted since; open a new session. Or the model file is being "
         "pulled by another docqa process.",
    413: "The body or upload is larger than DOCQA_MAX_UPLOAD_BYTES.",
    415: "The body is not of the endpoint's content type (JSON, or multipart for uploads), or the upload's "
         "type is not supported, or its name contradicts its content.",
    422: "A field is missing or invalid, or the input cannot be processed (the detail says why).",
    429: "Past the rate limit for this action, or the principal has DOCQA_PRINCIPAL_CONCURRENCY costly requests "
         "in progress; Retry-After says when to try again.",
    500: "An unexpected error; it was logged and nothing was changed.",
    502: "A remote model's server refused the request (its own message is quoted) or cut its stream; or the "
         "model hub could not be reached, or sent a file whose sha256 is not the one it lists.",
    503: "The model is missing, unusable or its queue is full (Retry-After when busy), or a remote model's "
         "servers cannot be reached (named); or the hub is asked for while offline (HF_HUB_OFFLINE).",
    507: "The disk is full, or the model's context could not be allocated.",
}

# Statuses that only some use cases raise, beyond what the rules in `error_statuses` give.
EXTRA: dict[str, tuple[int, ...]] = {
    "POST /api/documents": (415, 507),
    "POST /api/plan": (404, 502, 503),
    "POST /api/read-ahead": (404, 502, 503),
    "POST /api/sessions": (404, 502, 503),
    "POST /api/sessions/{session_id}/questions": (409, 502, 503, 507),
    "POST /api/batches": (404, 502, 503),
    # models pulled from a hub (web/models.py): model managers only; unknown names, offline, a hub's errors
    "POST /api/models/pull": (403, 404, 409, 502, 503, 507),
    "GET /api/models/pulls": (403,),
    "GET /api/models/pulls/{pull_id}": (403,),
    "DELETE /api/models/pulls/{pull_id}": (403,),
    "GET /api/models/recommend": (403, 404, 502, 503),
}


def error_statuses(route: HTTPRoute, method: str, handler: Any) -> set[int]:
    statuses = {400, 500}  # 400: a Host this server does not answer to
    if not handler.opt.get(PUBLIC):
        statuses.add(401)
    if handler.opt.get(RATE) or handler.opt.get(COSTLY):
        statuses.add(429)
    if method not in ("GET", "HEAD", "OPTIONS"):
        statuses.add(403)
    params = set(handler.parsed_fn_signature.parameters)
    path_params = set(route.path_parameters)
    if path_params:
        statuses.add(404)
    query = params - path_params - set(handler.resolve_dependencies()) - RESERVED_KWARGS - {"self"}
    if "data" in params:
        statuses |= {400, 413, 415, 422}
    if query:
        statuses.add(422)
    statuses.update(EXTRA.get(f"{method} {route.path_format}", ()))
    return statuses


def document_error_responses(app: Litestar) -> None:
    """Declare the `ErrorOut` responses of every /api operation (a handler's own `responses` win)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path_format.startswith("/api/"):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            if not handler.resolve_include_in_schema():
                continue
            declared = {
                status: ResponseSpec(data_container=ErrorOut, description=ERRORS[status], generate_examples=False)
                for status in sorted(error_statuses(route, method, handler))
            }
            handler.responses = {**declared, **(handler.responses or {})}


@dataclass
class JsonOrCsvOperation(Operation):
    """An operation whose 200 response is JSON, or CSV (`text/csv`, UTF-8 with BOM) when asked."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/csv; charset=utf-8"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))


async def complete_allow_header(message: Message, scope: Scope) -> None:
    """A before_send hook: an OPTIONS answer lists every method of its path."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS" or message["status"] != 204:
        return
    template = scope.get("path_template")
    app = scope.get("litestar_app")
    routes = app.routes if isinstance(app, Litestar) else []
    methods = next((r.methods for r in routes if isinstance(r, HTTPRoute) and r.path_format == template), None)
    if not methods:
        return
    headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(sorted(methods)).encode()))
    message["headers"] = headers


# -- the /schema pages, offline ------------------------------------------------------------------------

SWAGGER_ASSETS = "/vendor/swagger-ui"


def swagger_assets_router() -> Router:
    """Swagger UI's own files, from the `swagger-ui-bundle-v2` package: no CDN, works offline, same-origin under
    the page's CSP (`script-src 'self'`)."""
    from litestar.static_files import create_static_files_router
    from swagger_ui_bundle import swagger_ui_path

    return create_static_files_router(path=SWAGGER_ASSETS, directories=[str(swagger_ui_path)],
                                      include_in_schema=False, opt={PUBLIC: True})


class OfflineSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI at /schema and /schema/swagger, from vendored files; started by /static/swagger-init.js, since
    the CSP allows no inline script."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"])

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        return (
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title} API</title><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<link rel=\"icon\" href=\"{SWAGGER_ASSETS}/favicon-32x32.png\">"
            f"<link rel=\"stylesheet\" href=\"{SWAGGER_ASSETS}/swagger-ui.css\"></head>"
            "<body><div id=\"swagger-ui\" data-url=\"/schema/openapi.json\"></div>"
            f"<script src=\"{SWAGGER_ASSETS}/swagger-ui-bundle.js\"></script>"
            "<script src=\"/static/swagger-init.js\"></script></body></html>\n"
        ).encode()
