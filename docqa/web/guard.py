"""Requests a web page must not be able to make: the one place Host, Origin and body types are checked.

`RequestGuard` runs before authentication on every route (docqa/hosts.py explains the rules), and
`BodyTypeGuard` right after it:
- a `Host` that is not a loopback name in loopback mode (or not one of `DOCQA_ALLOWED_HOSTS` with
  keys) is refused with 400: that is how a DNS-rebinding page would reach the server;
- a state-changing request sent by another site's page (`Sec-Fetch-Site`, else `Origin`) gets 403;
- a body of the wrong type gets 415 before it is read: JSON endpoints take `application/json` (a
  cross-site page can only send `text/plain`, form or multipart bodies without a preflight), the
  upload takes `multipart/form-data`.

Litestar's own AllowedHostsMiddleware matches the whole Host value including its port and answers
a body of its own shape, and its CSRFConfig needs a token cookie that curl and scripts do not have;
hence this small middleware, answering in the API's error shape.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import Headers
from litestar.enums import RequestEncodingType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from docqa.errors import BadRequest, CrossSiteRequest, WrongContentType
from docqa.hosts import cross_site, host_allowed, parse_hosts
from docqa.settings import Settings

JSON = "application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def body_media_type(handler: Any) -> str | None:
    """The media type a handler's `data` parameter is read as (JSON or multipart), None without a body.
    (Not cached by `id(handler)`: a collected app's handler id is reused by the next app's.)"""
    data = handler.parsed_fn_signature.parameters.get("data") if handler is not None else None
    if data is None:
        return None
    media = getattr(data.kwarg_definition, "media_type", None) or RequestEncodingType.JSON
    return str(getattr(media, "value", media))


def is_json(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return base == JSON or (base.startswith("application/") and base.endswith("+json"))


class RequestGuard:
    def __init__(self, app: ASGIApp, keys_enabled: bool, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.keys_enabled = keys_enabled
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.check(scope)
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        headers = Headers.from_scope(scope)
        host = headers.get("host")
        if not host_allowed(host, self.keys_enabled, self.allowed_hosts):
            named = f"the host {host[:100]!r}" if host else "no host"
            which = ("loopback names and DOCQA_ALLOWED_HOSTS" if self.keys_enabled
                     else "localhost, 127.0.0.1 and [::1] (loopback mode)")
            raise BadRequest(f"This server answers only to {which}; this request named {named}. "
                             "A web page may be trying to reach it through DNS rebinding.")
        method = str(scope.get("method", "GET")).upper()
        why = cross_site(method, headers.get("sec-fetch-site"), headers.get("origin"), host)
        if why:
            raise CrossSiteRequest(f"A web page on another site ({why}) may not change anything here; use "
                                   "docqa's own page, curl or the CLI.")


class BodyTypeGuard:
    """The body's content type, checked after authentication (a request without a key gets its 401 first)
    and before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("method", "GET")).upper() in BODY_METHODS:
            got = Headers.from_scope(scope).get("content-type", "")
            check_body_type(body_media_type(scope.get("route_handler")), got)
        await self.app(scope, receive, send)


def check_body_type(expected: str | None, got: str) -> None:
    if expected == JSON and not is_json(got):
        raise WrongContentType(f"This endpoint takes a JSON body: send it with Content-Type: application/json "
                               f"(got {got[:80]!r}).", expected=JSON)
    if expected == RequestEncodingType.MULTI_PART.value and not got.lower().startswith("multipart/form-data"):
        raise WrongContentType(f"Uploads are multipart/form-data with the file in the field 'file' "
                               f"(got {got[:80]!r}); e.g. curl -F file=@contract.pdf …",
                               expected="multipart/form-data")


def request_guard(settings: Settings, keys_enabled: bool) -> DefineMiddleware:
    return DefineMiddleware(RequestGuard, keys_enabled=keys_enabled, allowed_hosts=parse_hosts(settings.allowed_hosts))


def body_type_guard() -> DefineMiddleware:
    return DefineMiddleware(BodyTypeGuard)
