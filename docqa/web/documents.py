"""/api/documents: upload, list, read, sections, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.openapi import ResponseSpec
from litestar.params import Body, FromPath, QueryParameter

from docqa.documents import DocumentService
from docqa.web.access import RATE
from docqa.web.costly import run_watched
from docqa.web.schemas import DocumentOut, SectionOut, SectionPage


@dataclass
class UploadForm:
    file: UploadFile
    password: str | None = None  # opens an encrypted PDF; used for this parse only, never stored or logged
    ocr_langs: str | None = None  # Tesseract languages for this upload's scanned pages (eng, ara, eng+ara …)


MAX_OFFSET = 2**31 - 1  # far past any document's sections; SQLite's integers end at 2**63


class DocumentController(Controller):
    path = "/api/documents"
    tags = ["documents"]

    @post("/", summary="Upload a document (PDF, Word, HTML, text, Markdown, source code or a zip of a codebase)",
          opt={RATE: "uploads"},
          responses={200: ResponseSpec(DocumentOut, description="The same bytes were uploaded before: that document")})
    async def upload(
        self,
        request: Request[Any, Any, Any],
        documents: NamedDependency[DocumentService],
        principal: NamedDependency[str],
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[DocumentOut]:
        """201 with the new document, or 200 with the existing one when the same bytes were uploaded before
        (by the same principal: another principal's copy is a document of its own)."""
        content = await data.file.read()
        # a client that leaves while its upload is parsed ends the parse (and its OCR) at once
        result = await run_watched(request, lambda cancel: documents.ingest(
            data.file.filename, content, principal, password=data.password, ocr_langs=data.ocr_langs, cancel=cancel))
        return Response(DocumentOut.of(result.document), status_code=201 if result.created else 200)

    @get("/", sync_to_thread=True, summary="List documents")
    def list_documents(self, documents: NamedDependency[DocumentService],
                       principal: NamedDependency[str]) -> list[DocumentOut]:
        return [DocumentOut.of(d) for d in documents.list_documents(principal)]

    @get("/{document_id:str}", sync_to_thread=True, summary="One document")
    def get_document(self, documents: NamedDependency[DocumentService], principal: NamedDependency[str],
                     document_id: FromPath[str]) -> DocumentOut:
        return DocumentOut.of(documents.get(document_id, principal))

    @get("/{document_id:str}/sections", sync_to_thread=True, summary="A document's sections, paged")
    def get_sections(
        self,
        documents: NamedDependency[DocumentService],
        principal: NamedDependency[str],
        document_id: FromPath[str],
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> SectionPage:
        rows, total = documents.sections(document_id, principal, offset=offset, limit=limit)
        return SectionPage(items=[SectionOut.of(r) for r in rows], total=total, offset=offset, limit=limit)

    @delete("/{document_id:str}", sync_to_thread=True, summary="Delete a document, its sections and file")
    def delete_document(self, documents: NamedDependency[DocumentService], principal: NamedDependency[str],
                        document_id: FromPath[str]) -> None:
        documents.delete(document_id, principal)
