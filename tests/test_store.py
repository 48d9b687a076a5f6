"""The store: Alembic schema == models, SQLite connection settings, the blob store and its sweeps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from litestar.testing import TestClient
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from docqa.documents import DocumentService
from docqa.settings import Settings
from docqa.store.db import Database, alembic_config, migrate
from docqa.store.files import BlobStore
from docqa.store.models import Base, Document, Section
from docqa.web.app import create_app
from tests.conftest import stored_files
from tests.support import LOOPBACK


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def db_url(tmp_path: Path, database_url: str | None) -> str:
    url = database_url or f"sqlite:///{tmp_path / 'db' / 'docqa.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture
def db(db_url: str):
    database = Database(db_url)
    yield database
    database.dispose()


# --- schema ---------------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_migrations_create_exactly_the_models(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
        assert current == head is not None
        assert set(inspect(engine).get_table_names()) >= {
            "alembic_version", "documents", "sections", "sessions", "session_documents", "messages",
            "batches", "batch_items", "rate_counters",
        }
    finally:
        engine.dispose()


def test_postgresql_is_built_from_empty_by_the_same_migrations(pg_cluster):
    """An empty PostgreSQL database, migrated to head by the migrations SQLite uses, matches the models;
    migrating again (another instance starting) is a no-op, and the advisory lock is released."""
    name = pg_cluster.create_database()
    url = pg_cluster.url(name)
    try:
        assert pg_cluster.admin("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name) == [(0,)]
        migrate(url)
        migrate(url)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
                current = MigrationContext.configure(conn).get_current_revision()
                assert conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar() == 0
            assert current == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        finally:
            engine.dispose()
    finally:
        pg_cluster.drop_database(name)


def test_migrate_is_idempotent_and_creates_the_folder(tmp_path):
    path = tmp_path / "nested" / "folder" / "docqa.sqlite3"
    url = f"sqlite:///{path}"
    migrate(url)
    migrate(url)  # already at head: a no-op, not an error
    assert path.is_file()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_pragmas_on_every_connection(db):
    for _ in range(2):  # a fresh pool connection gets them too
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        db.engine.dispose()


def _document(**overrides) -> Document:
    fields = dict(
        principal="", filename="a.txt", media_type="text/plain", kind="text", sha256="0" * 64, size_bytes=1,
        n_pages=None, n_sections=1, n_chars=1, token_estimate=1, skipped=[],
    )
    fields.update(overrides)
    return Document(**fields)


@pytest.mark.both_databases
def test_database_enforces_foreign_keys_cascade_and_unique_hash(db):
    with db.transaction() as s:
        doc = _document()
        s.add(doc)
        s.flush()
        s.add(Section(document_id=doc.id, ordinal=0, text="a", n_chars=1, token_estimate=1))
    # a section for a document that does not exist is refused
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(Section(document_id="f" * 32, ordinal=0, text="x", n_chars=1, token_estimate=1))
    # the same bytes twice for one principal are refused; another principal may have them
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(_document())
    with db.transaction() as s:
        s.add(_document(principal="someone-else"))
    # deleting the row in plain SQL removes its sections (ON DELETE CASCADE, foreign_keys=ON)
    with db.transaction() as s:
        s.execute(text("DELETE FROM documents WHERE id = :id"), {"id": doc.id})
    with db.reader() as s:
        assert s.execute(text("SELECT count(*) FROM sections")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM documents")).scalar() == 1


# --- blob store ---------------------------------------------------------------------------------


def test_blob_store_put_read_remove(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    data = b"original upload bytes"
    path = blobs.put(sha(data), data)
    assert path == tmp_path / "blobs" / sha(data)[:2] / sha(data)
    assert blobs.exists(sha(data)) and blobs.read(sha(data)) == data
    assert blobs.put(sha(data), data) == path  # idempotent
    assert list(blobs.all_hashes()) == [sha(data)]
    assert [p.name for p in path.parent.iterdir()] == [sha(data)]  # no temp file left behind
    blobs.remove(sha(data))
    blobs.remove(sha(data))  # removing twice is fine
    assert not blobs.exists(sha(data))
    assert list(blobs.all_hashes()) == []


def test_blob_store_sweep_removes_temp_files_and_unreferenced_blobs(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    assert blobs.sweep(set()) == []  # no folder yet: nothing to do
    keep, orphan = b"referenced", b"orphaned"
    keep_path = blobs.put(sha(keep), keep)
    orphan_path = blobs.put(sha(orphan), orphan)
    tmp = keep_path.parent / ".abc123.tmp"  # a write interrupted before its rename
    tmp.write_bytes(b"half")

    removed = blobs.sweep({sha(keep)})

    assert set(removed) == {sha(orphan), ".abc123.tmp"}
    assert keep_path.is_file() and keep_path.read_bytes() == keep
    assert not orphan_path.exists()
    assert not tmp.exists()
    assert blobs.sweep({sha(keep)}) == []


# --- crash recovery ------------------------------------------------------------------------------


@pytest.mark.both_databases
def test_sweep_orphans_after_a_crash_between_file_and_row(tmp_path, db):
    settings = Settings(data_dir=tmp_path / "data")
    service = DocumentService(settings, db, BlobStore(settings.blobs_dir))
    kept = service.ingest("kept.txt", b"a document that was fully stored\n")
    assert kept.created

    # the crash: the blob was written and renamed into place, the row never committed
    lost = b"an upload that died before its database row\n"
    service.blobs.put(sha(lost), lost)
    (service.blobs.path(sha(lost)).parent / ".deadbeef.tmp").write_bytes(b"partial")
    assert len(stored_files(settings)) == 3

    removed = service.sweep_orphans()

    assert sha(lost) in removed and ".deadbeef.tmp" in removed
    assert stored_files(settings) == [service.blobs.path(kept.document.sha256)]
    assert service.get(kept.document.id).sha256 == sha(b"a document that was fully stored\n")
    assert service.sweep_orphans() == []
    # the same bytes can be uploaded again and are stored properly this time
    again = service.ingest("lost.txt", lost)
    assert again.created and service.blobs.read(sha(lost)) == lost


def test_app_start_removes_orphans(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        r = c.post("/api/documents", files={"file": ("kept.txt", b"kept\n", "text/plain")})
        assert r.status_code == 201
    orphan = b"orphan left by a crash\n"
    BlobStore(settings.blobs_dir).put(sha(orphan), orphan)
    assert len(stored_files(settings)) == 2

    with TestClient(create_app(settings), base_url=LOOPBACK) as c:  # a restart
        assert stored_files(settings) == [BlobStore(settings.blobs_dir).path(sha(b"kept\n"))]
        assert [d["filename"] for d in c.get("/api/documents").json()] == ["kept.txt"]


def test_the_sweep_leaves_alone_what_another_instance_is_storing(tmp_path, pg_url):
    """Two instances on one PostgreSQL database and one folder: while one holds a hash's lock (it is between
    writing the file and committing the row), the other's start-up sweep keeps that file and its temp file;
    once the lock is free and no row came, they go."""
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    writer, starting = Database(pg_url), Database(pg_url)
    try:
        service = DocumentService(settings, starting, BlobStore(settings.blobs_dir))
        data = b"bytes another instance is storing right now\n"
        with writer.lock("blob", sha(data)):
            service.blobs.put(sha(data), data)
            tmp = service.blobs.path(sha(data)).parent / f".{sha(data)}.x1y2z3.tmp"
            tmp.write_bytes(b"half")
            assert service.sweep_orphans() == []
            assert service.blobs.exists(sha(data)) and tmp.exists()
        assert set(service.sweep_orphans()) == {sha(data), tmp.name}
        assert stored_files(settings) == []
    finally:
        writer.dispose()
        starting.dispose()


@pytest.mark.both_databases
def test_the_seam_migrations_rename_owner_to_principal_and_lease_holder_keeping_the_rows(db_url):
    """0014_seam: a batch item's lease holder (the worker) is no longer called its owner; 0015_principal: a
    batch's, session's and document's principal is no longer called its owner either. The renames keep every
    row, down and up again, on SQLite and PostgreSQL alike."""
    from alembic import command

    from docqa.store.models import Batch, BatchItem

    db = Database(db_url)
    try:
        with db.transaction() as s:
            batch = Batch(principal="alice", status="running", document_ids=["d"], questions=["q"], model="default",
                          per_document=False, options={}, plans={})
            s.add(batch)
            s.flush()
            s.add(BatchItem(batch_id=batch.id, document_id=None, question_index=0, question="q", status="running",
                            citations=[], timings={}, attempts=1, lease_holder="host:1:abcd"))
    finally:
        db.dispose()
    cfg = alembic_config(db_url)
    engine = create_engine(db_url)
    try:
        command.downgrade(cfg, "0013a")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT lease_owner FROM batch_items")).scalars().all() == ["host:1:abcd"]
            assert conn.execute(text("SELECT owner FROM batches")).scalars().all() == ["alice"]
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT lease_holder FROM batch_items")).scalars().all() == ["host:1:abcd"]
            assert conn.execute(text("SELECT principal FROM batches")).scalars().all() == ["alice"]
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
