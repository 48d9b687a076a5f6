"""The one place where HTTP requests are authenticated and rate limited.

- `ApiKeyMiddleware` runs before every route handler not marked public (`opt={PUBLIC: True}`: the page,
  /static, /api/health, /schema) and puts the request's principal in `scope["user"]`: the key's NAME,
  or "" in loopback mode (no keys configured). A missing or unknown key is refused with 401 and
  `WWW-Authenticate: Bearer` before the handler, its body parsing or any rate count runs.
- `principal` is the dependency giving controllers that principal; they pass it as `principal=` to every
  service call, so another principal's documents, sessions and batches answer 404.
- `rate_limits(settings)` builds Litestar's `RateLimitMiddleware`, keyed by (action, principal), for the
  handlers marked `opt={RATE: "uploads" | "questions"}`; past the limit: 429 with a sentence and Retry-After.
  The windows are counted in the database (docqa/ratelimit.py), not in memory, so a limit holds across
  every instance sharing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from docqa.access import KeyRing, Rate, key_from_headers, parse_rate
from docqa.errors import RateLimited
from docqa.ratelimit import RateCounters
from docqa.settings import Settings

PUBLIC = "public"  # route opt: served without a key
RATE = "rate_limit"  # route opt: which rate limit applies ("uploads" or "questions")
CHALLENGE = {"WWW-Authenticate": "Bearer"}
NO_KEY = ("This server needs an API key: send it as the X-API-Key header or as Authorization: Bearer KEY. "
          "Ask the server's operator for one.")
BAD_KEY = "The API key was not accepted: it is not one of this server's keys. Check it and try again."


def keyring_of(settings: Settings) -> KeyRing:
    return KeyRing.from_spec(settings.api_keys.get_secret_value() if settings.api_keys is not None else None)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any], keyring: KeyRing) -> str | None:
    """The principal whose key the request carries ("" in loopback mode); None when it carries no valid key."""
    key = key_from_headers(connection.headers.get("x-api-key"), connection.headers.get("authorization"))
    if keyring.enabled and key is None:
        return None
    return keyring.principal_for(key)


class ApiKeyMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: ASGIApp, keyring: KeyRing) -> None:
        super().__init__(app, exclude_from_auth_key=PUBLIC, scopes={ScopeType.HTTP})
        self.keyring = keyring

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        if not self.keyring.enabled:
            return AuthenticationResult(user="", auth=None)
        principal = principal_of(connection, self.keyring)
        if principal is None:
            has_key = key_from_headers(connection.headers.get("x-api-key"),
                                       connection.headers.get("authorization")) is not None
            raise NotAuthorizedException(detail=BAD_KEY if has_key else NO_KEY, headers=dict(CHALLENGE))
        return AuthenticationResult(user=principal, auth=None)


def auth_middleware(keyring: KeyRing) -> DefineMiddleware:
    return DefineMiddleware(ApiKeyMiddleware, keyring=keyring)


def provide_principal(request: Request[Any, Any, Any]) -> str:
    """The dependency `principal`: who is asking (set by ApiKeyMiddleware)."""
    return str(request.user)


# -- rate limits ---------------------------------------------------------------------------------------


@dataclass
class PrincipalRateLimitConfig(RateLimitConfig):
    action: str = "requests"
    setting: str = ""
    rate: Rate | None = None


class PrincipalRateLimit(RateLimitMiddleware):
    """Litestar's fixed-window limiter, counted in the database (every instance sees one count) and refusing
    with a sentence (429, Retry-After) instead of a bare status."""

    config: PrincipalRateLimitConfig

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope)
        if await self.should_check_request(request=request):
            counters = RateCounters(app.state.db)
            hit = await to_thread.run_sync(counters.hit, self.cache_key_from_request(request),
                                           self.max_requests, self.unit)
            if not hit.allowed:
                retry_after = hit.retry_after()
                raise RateLimited(
                    f"Too many {self.config.action}: the limit is {self.config.rate} "
                    f"({self.config.setting}). Try again in {retry_after} second{'s' if retry_after != 1 else ''}.",
                    retry_after=retry_after, limit=self.max_requests, per=self.unit,
                )
            # RateLimit-* headers as Litestar sets them: the window's count so far and its end
            window = CacheObject(history=[hit.reset_at] * hit.count, reset=hit.reset_at)
            send = self.create_send_wrapper(send=send, cache_object=window)
        await self.app(scope, receive, send)


def _limit(action: str, setting: str, spec: str) -> DefineMiddleware | None:
    rate = parse_rate(spec)
    if rate is None:
        return None

    def applies(request: Request[Any, Any, Any]) -> bool:
        return bool(request.route_handler.opt.get(RATE) == action)

    def identifier(request: Request[Any, Any, Any]) -> str:
        return f"{action}:{request.user}"

    config = PrincipalRateLimitConfig(
        rate_limit=(rate.unit, rate.count),  # type: ignore[arg-type]  # a unit parse_rate checked
        identifier_for_request=identifier, check_throttle_handler=applies, middleware_class=PrincipalRateLimit,
        action=action, setting=setting, rate=rate,
    )
    return config.middleware


def rate_limits(settings: Settings) -> list[DefineMiddleware]:
    """The limiters for uploads and for questions (batches count as questions); none for a "0" setting."""
    limits = [_limit("uploads", "DOCQA_RATE_UPLOADS", settings.rate_uploads),
              _limit("questions", "DOCQA_RATE_QUESTIONS", settings.rate_questions)]
    return [m for m in limits if m is not None]
