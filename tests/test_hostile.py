"""Hostile files built by hand: each must end within the parse limits with a clear error, and the
service must keep working afterwards."""

from __future__ import annotations

import hashlib
import io
import time
import zlib

import pytest
from litestar.testing import TestClient

from docqa.settings import Settings
from docqa.web.app import create_app
from tests.conftest import stored_files
from tests.support import LOOPBACK

TIMEOUT_S = 8.0


def raw_pdf(objects: list[bytes], *, trailer_extra: bytes = b"", xref_prev: int | None = None) -> bytes:
    """A PDF from numbered object bodies (1-based), with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    prev = b" /Prev %d" % (xref if xref_prev == -1 else xref_prev) if xref_prev is not None else b""
    out.write(b"trailer\n<< /Size %d /Root 1 0 R%s%s >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, prev, trailer_extra, xref))
    return out.getvalue()


def stream(data: bytes, extra: bytes = b"", length: int | None = None) -> bytes:
    n = len(data) if length is None else length
    return b"<< /Length %d %s >>\nstream\n" % (n, extra) + data + b"\nendstream"


PAGE_TREE = b"<< /Type /Catalog /Pages 2 0 R >>"


def one_page(content_obj: bytes) -> list[bytes]:
    return [
        PAGE_TREE,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        content_obj,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def flate_bomb() -> bytes:
    # 200 MB of zeros deflated twice: a few kilobytes on disk.
    inner = zlib.compressobj(9)
    chunks = [inner.compress(b"\0" * (1 << 20)) for _ in range(200)]
    once = b"".join(chunks) + inner.flush()
    twice = zlib.compress(once, 9)
    return raw_pdf(one_page(stream(twice, b"/Filter [/FlateDecode /FlateDecode]")))


def huge_length() -> bytes:
    text = b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET"
    return raw_pdf(one_page(stream(text, length=10**15)))


def circular_xref() -> bytes:
    text = b"BT /F1 12 Tf 72 720 Td (Loop) Tj ET"
    return raw_pdf(one_page(stream(text)), xref_prev=-1)


def page_tree_loop() -> bytes:
    # The page tree's only kid is the tree itself.
    return raw_pdf([PAGE_TREE, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"])


def deep_nesting() -> bytes:
    deep = b"[" * 50_000 + b"]" * 50_000
    return raw_pdf([PAGE_TREE, b"<< /Type /Pages /Kids [] /Count 0 /Junk " + deep + b" >>"])


HOSTILE = {
    "flate_bomb": flate_bomb,
    "huge_declared_length": huge_length,
    "circular_xref": circular_xref,
    "page_tree_loop": page_tree_loop,
    "deep_nesting": deep_nesting,
}


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile"), parse_timeout_s=TIMEOUT_S, parse_memory_bytes=1024**3
    )
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        c.app.state.settings = settings
        yield c, settings


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pdf_ends_within_limits_with_a_clear_error(hostile_client, name):
    client, settings = hostile_client
    data = HOSTILE[name]()
    started = time.monotonic()
    r = client.post("/api/documents", files={"file": (f"{name}.pdf", data, "application/pdf")})
    elapsed = time.monotonic() - started
    # A hostile file may parse to nothing (422) or, for the lenient cases, to a readable page; it may
    # never crash the service (5xx) or outlive the parse limit.
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        detail = r.json()["detail"]
        assert f"{name}.pdf" in detail and len(detail) > 30
    assert elapsed < TIMEOUT_S + 5
    # the service still works
    after = (f"after-{name}.txt", f"still fine {name}".encode(), "text/plain")
    ok = client.post("/api/documents", files={"file": after})
    assert ok.status_code == 201
    if r.status_code == 422:
        names = {d["filename"] for d in client.get("/api/documents").json()}
        assert f"{name}.pdf" not in names
        stored = {p.name for p in stored_files(settings)}
        assert hashlib.sha256(data).hexdigest() not in stored


def test_flate_bomb_is_refused_not_inflated(hostile_client):
    client, _ = hostile_client
    r = client.post("/api/documents", files={"file": ("bomb2.pdf", flate_bomb() + b"%x\n", "application/pdf")})
    assert r.status_code == 422
    assert "bomb2.pdf" in r.json()["detail"]
