"""The Litestar application: `create_app(settings)` wires services, routes and error mapping."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.types import Message, Scope
from pydantic import SecretStr
from sqlalchemy import func, select

from docqa import __version__
from docqa.batches import BatchService
from docqa.documents import DocumentService
from docqa.engine.discovery import add_pulled
from docqa.engine.engine import Engine
from docqa.engine.models import ModelRegistry
from docqa.errors import DocqaError
from docqa.ingest.sandbox import warm_up as warm_up_parser
from docqa.pull import Pulls
from docqa.sessions import SessionService
from docqa.settings import Settings
from docqa.store.db import Database, migrate
from docqa.store.files import BlobStore
from docqa.store.models import Document
from docqa.web.access import PUBLIC, auth_middleware, keyring_of, principal_of, provide_principal, rate_limits
from docqa.web.batches import BatchController
from docqa.web.costly import costly_gate
from docqa.web.documents import DocumentController
from docqa.web.errors import EXCEPTION_HANDLERS, DocqaRequest
from docqa.web.guard import body_type_guard, request_guard
from docqa.web.models import ModelsController
from docqa.web.openapi import OfflineSwaggerUI, complete_allow_header, document_error_responses, swagger_assets_router
from docqa.web.schemas import Health
from docqa.web.sessions import SessionController, list_models, without_paths
from docqa.worker import BatchWorker

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
README = STATIC_DIR.parent / "README.md"
MULTIPART_OVERHEAD = 64 * 1024


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CSP.encode()),  # the /schema pages too: their Swagger UI is served from here
]
NO_STORE = (b"cache-control", b"no-store")  # what /api answers is private to its principal


async def security_headers(message: Message, scope: Scope) -> None:
    """Every HTTP response gets the security headers, and every /api answer `Cache-Control: no-store`.

    A coroutine, not a plain function: Litestar runs a sync `before_send` hook in its thread pool for
    every message sent, each SSE event of a streamed answer included (a thread hop per token)."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or [])
    present = {name.lower() for name, _ in headers}
    extra = list(SECURITY_HEADERS)
    if scope.get("path", "").startswith("/api/"):
        extra.append(NO_STORE)
    headers.extend(h for h in extra if h[0] not in present)
    message["headers"] = headers


@get("/api/health", sync_to_thread=True, tags=["service"], opt={PUBLIC: True},
     responses={503: ResponseSpec(Health, description="The database does not answer: status unavailable")})
def health(request: Request, state: State) -> Response[Health]:
    """Public: `documents` counts only the caller's own documents, and is null without a valid key.
    `details.database` gives the dialect and the latency of a `SELECT 1`; when it does not answer, the
    status is `unavailable` and the answer 503 (a load balancer then sends requests elsewhere). Only the
    operator of a loopback-mode server (no API keys) sees where things are: the database's URL (without
    password or query parameters), runner pids, CPU details and the model servers' URLs. With API keys,
    nobody learns those from health, with a key or without one (see `for_principals`)."""
    db: Database = state.db
    database: dict[str, Any] = {"dialect": db.dialect, "url": db.public_url, "shared": db.shared}
    try:
        database["latency_ms"] = round(db.ping() * 1000, 2)
    except DocqaError as exc:
        database.update(latency_ms=None, error=exc.detail)
    principal = principal_of(request, state.keyring)
    n = None
    if principal is not None and "error" not in database:
        with db.reader() as s:
            n = int(s.scalar(select(func.count()).select_from(Document).where(Document.principal == principal)) or 0)
    # ready/error checked now (a vanished model file shows), state, running, waiting, queue_depth, queue_size
    models = {spec.name: public_health(state.engine.model_health(spec), state.registry)
              for spec in state.registry.list()}
    ok = "error" not in database
    details = {"models": models, "database": database, "ocr": _ocr(state),
               "read_ahead": state.sessions.reading.status(principal) if principal is not None else None}
    if state.keyring.enabled:
        details = for_principals(details)
    return Response(Health(status="ok" if ok else "unavailable", version=__version__, documents=n, details=details),
                    status_code=200 if ok else 503)


_OPERATOR_ONLY = frozenset({"url", "pid", "system_info", "extra_buffers_reason", "resident_bytes"})


def for_principals(details: dict[str, Any]) -> dict[str, Any]:
    """Health as a server with API keys shows it: no database URL, no process ids, no CPU report, no model
    server URLs (their index stands for them) — nothing that says where docqa keeps things or runs them."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _OPERATOR_ONLY}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {**strip({k: v for k, v in details.items() if k != "ocr"}), "ocr": details["ocr"]}


def _ocr(state: State) -> dict[str, object]:
    """Whether scanned pages can be read here: Tesseract's version and languages (cached after the first call)."""
    from docqa.ingest.ocr import installed_languages, ocr_status, tesseract_version

    settings = state.settings
    return {"enabled": settings.ocr, "tesseract": tesseract_version(), "langs": settings.ocr_langs,
            "installed_langs": sorted(installed_languages() - {"osd"}), "status": ocr_status(settings.ocr_langs)}


def public_health(health: dict[str, Any], registry: ModelRegistry) -> dict[str, Any]:
    """Health is public: a model's error names its file, never the folder it lives in."""
    return {**health, "error": without_paths(health["error"], registry)} if health.get("error") else health


@get("/", media_type=MediaType.HTML, include_in_schema=False, opt={PUBLIC: True})
async def index() -> File:
    return File(STATIC_DIR / "index.html", content_disposition_type="inline")


@get("/readme", media_type="text/markdown; charset=utf-8", include_in_schema=False, opt={PUBLIC: True})
async def readme() -> File:
    """The README, for the page's help (it shows a section of it, e.g. how to bring a model)."""
    return File(path=README, content_disposition_type="inline", media_type="text/markdown; charset=utf-8")


def _documents(state: State) -> DocumentService:
    return state.documents


def _sessions(state: State) -> SessionService:
    return state.sessions


def _registry(state: State) -> ModelRegistry:
    return state.registry


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    keyring = keyring_of(settings)
    if keyring.enabled:  # the app keeps the keys' digests only, never the plain keys
        settings = settings.model_copy(update={"api_keys": SecretStr(keyring.hashed_spec())})

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate(settings.resolved_database_url)
        db = Database(settings.resolved_database_url)
        log.info("database: %s", db.public_url)
        documents = DocumentService(settings, db, BlobStore(settings.blobs_dir))
        documents.sweep_orphans()
        warm_up_parser()  # the first upload need not wait for the parse forkserver to import the parsers
        registry = ModelRegistry(settings)
        engine = Engine(settings, registry)
        batches = BatchService(settings, db, documents, registry, engine)
        sessions = SessionService(db, documents, registry, engine)
        documents.on_delete.append(sessions.reading.stop_documents)  # a deleted document is not read ahead
        workers = [BatchWorker(batches) for _ in range(settings.batch_workers)]
        if keyring.enabled:
            log.info("API keys configured for %d principal(s)", len(keyring.principals))
        else:
            log.warning("no API keys configured: loopback only")
        if settings.ocr:
            from docqa.ingest.ocr import ocr_status

            log.info("%s", ocr_status(settings.ocr_langs))
        pulls = Pulls(settings, lambda path: add_pulled(registry, settings.models_dir, path))
        app.state.update(db=db, documents=documents, registry=registry, engine=engine,
                         sessions=sessions, batches=batches, pulls=pulls)
        for worker in workers:  # answer queued batch items in the background, resuming after a restart
            worker.start()
        if settings.preload:  # the first question need not wait for the model to load
            threading.Thread(target=engine.preload, args=(registry,), daemon=True, name="preload").start()
        try:
            yield
        finally:
            for worker in workers:
                worker.stop()
            engine.close()
            db.dispose()

    app = Litestar(
        route_handlers=[
            health, index, readme, DocumentController, SessionController, BatchController, list_models,
            ModelsController,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False,
                                       opt={PUBLIC: True}),
            swagger_assets_router(),
        ],
        request_class=DocqaRequest,
        # refuse what a web page must not send, authenticate, count the rates, then the principal's costly ones
        middleware=[request_guard(settings, keyring.enabled), auth_middleware(keyring), body_type_guard(),
                    *rate_limits(settings), costly_gate(settings.principal_concurrency)],
        lifespan=[lifespan],
        before_send=[security_headers, complete_allow_header],
        state=State({"settings": settings, "keyring": keyring}),
        dependencies={
            "documents": Provide(_documents, sync_to_thread=False),
            "sessions": Provide(_sessions, sync_to_thread=False),
            "registry": Provide(_registry, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(title="docqa", version=__version__,  # the docs carry no user data
                                     render_plugins=[OfflineSwaggerUI()],
                                     openapi_router=Router(path="/schema", route_handlers=[], opt={PUBLIC: True},
                                                           include_in_schema=False)),
        request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        multipart_form_part_limit=10,
    )
    document_error_responses(app)  # every error status the API answers, in /schema
    return app
