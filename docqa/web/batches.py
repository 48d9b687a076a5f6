"""/api/batches: create (202, answered in the background), list, progress and results, CSV, cancel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Meta

from docqa.batches import BatchService
from docqa.errors import InvalidRequest
from docqa.web.access import RATE
from docqa.web.costly import COSTLY, run_on_lane
from docqa.web.openapi import JsonOrCsvOperation
from docqa.web.schemas import JSON_BODY_LIMIT, DocumentIds, MaxTokens, Name, SamplingIn


@dataclass
class BatchIn:
    document_ids: DocumentIds
    questions: Annotated[list[str], Meta(max_length=10_000)]  # DOCQA_BATCH_MAX_QUESTIONS says the real limit
    model: Name | None = None
    mode: Name | None = None
    per_document: bool = False
    max_tokens: MaxTokens | None = None
    sampling: SamplingIn = field(default_factory=SamplingIn)
    thinking: bool | None = None


def _service(state: State) -> BatchService:
    return state.batches


class BatchController(Controller):
    path = "/api/batches"
    tags = ["batches"]

    @post("/", status_code=202,
          summary="Queue questions over documents (per_document: each document separately); answered in the background",
          opt={RATE: "questions", COSTLY: True}, request_max_body_size=JSON_BODY_LIMIT)
    async def create(self, request: Request, state: State, principal: NamedDependency[str],
                     data: JSONBody[BatchIn]) -> dict[str, Any]:
        return await run_on_lane(request, lambda: _service(state).create(
            data.document_ids, data.questions, data.model, data.mode, data.per_document, data.max_tokens,
            data.sampling.to_dict(), data.thinking, principal=principal,
        ))

    @get("/", sync_to_thread=True, summary="List batches with their progress, newest first")
    def list_batches(self, state: State, principal: NamedDependency[str]) -> list[dict[str, Any]]:
        return _service(state).list_batches(principal)

    @get("/{batch_id:str}", sync_to_thread=True, summary="A batch's status, progress and results so far")
    def get_batch(self, state: State, principal: NamedDependency[str], batch_id: FromPath[str]) -> dict[str, Any]:
        return _service(state).get(batch_id, principal)

    @get("/{batch_id:str}/results", sync_to_thread=True,
         summary="The results as JSON, or as CSV for a spreadsheet (format=csv)", operation_class=JsonOrCsvOperation)
    def results(self, state: State, principal: NamedDependency[str], batch_id: FromPath[str],
                format: FromQuery[Literal["json", "csv"]] = "json") -> Response[Any]:
        service = _service(state)
        if format == "json":
            return Response(service.results(batch_id, principal))
        if format == "csv":
            return Response(
                service.results_csv(batch_id, principal).encode("utf-8"), media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'},
            )
        raise InvalidRequest(f"Unknown format {format!r}; use 'json' or 'csv'.")

    @delete("/{batch_id:str}", sync_to_thread=True, status_code=200,
            summary="Cancel what is not answered yet; returns the batch")
    def cancel(self, state: State, principal: NamedDependency[str], batch_id: FromPath[str]) -> dict[str, Any]:
        return _service(state).cancel(batch_id, principal)
