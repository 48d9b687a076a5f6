"""Batch claims under contention, on SQLite and on a real PostgreSQL server: eight workers of two
"instances" (two Database objects, two connection pools) claim and settle a 120-item batch at once;
every item is claimed and settled exactly once. No model is needed: claim() and _finish() are the
database side of the worker, exercised as the worker thread runs them.

Also: a lease whose principal is alive is never reclaimed at start, and one whose principal died is — on
PostgreSQL through the principal's advisory lock, whatever host it ran on.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from docqa.batches import BatchService
from docqa.documents import DocumentService
from docqa.engine.engine import Engine
from docqa.engine.models import ModelRegistry
from docqa.settings import Settings
from docqa.store.db import Database, migrate
from docqa.store.files import BlobStore
from docqa.store.models import Batch, BatchItem, utcnow
from docqa.worker import _LIVE_HOLDERS, BatchWorker


def _service(settings: Settings) -> BatchService:
    url = settings.resolved_database_url
    db = Database(url)
    documents = DocumentService(settings, db, BlobStore(settings.blobs_dir))
    registry = ModelRegistry(settings)
    return BatchService(settings, db, documents, registry, Engine(settings, registry))


def _batch(db: Database, n: int, principal: str = "") -> str:
    with db.transaction() as s:
        batch = Batch(principal=principal, status="queued", document_ids=[], questions=[f"q{i}" for i in range(n)],
                      model="default", options={}, plans={})
        s.add(batch)
        s.flush()
        s.add_all(BatchItem(batch_id=batch.id, question_index=i, question=f"q{i}", status="queued", citations=[],
                            timings={}, attempts=0) for i in range(n))
        return batch.id


@pytest.mark.both_databases
def test_many_workers_claim_each_item_exactly_once(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    instances = [_service(settings), _service(settings)]
    batch_id = _batch(instances[0].db, 120)
    claimed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(service: BatchService) -> None:
        worker = BatchWorker(service, lease_s=60)
        try:
            while (claim := worker.claim(batch_id)) is not None:
                with lock:
                    claimed.append(claim.item_id)
                assert worker._finish(claim, "done", answer=f"answer {claim.item_id}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(instances[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert len(claimed) == 120 and Counter(claimed).most_common(1)[0][1] == 1
        summary = instances[1].get(batch_id)
        assert summary["status"] == "done" and summary["done"] == 120
        assert all(x["attempts"] == 1 and x["answer"] == f"answer {x['id']}" for x in summary["results"])
        with instances[0].db.reader() as s:
            assert s.get(Batch, batch_id).status == "done"  # the stored status, counted under the row lock
    finally:
        for service in instances:
            service.db.dispose()


@pytest.mark.both_databases
def test_reclaim_gives_back_only_what_a_dead_worker_held(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    live_service, other_service = _service(settings), _service(settings)
    batch_id = _batch(live_service.db, 2)
    live = BatchWorker(live_service, lease_s=60)
    live._alive = live_service.db.hold("worker", live.lease_holder)  # what start() takes
    dead = BatchWorker(other_service, lease_s=60)  # never started: its principal holds no lock, as after a SIGKILL
    first, second = live.claim(batch_id), dead.claim(batch_id)
    assert first is not None and second is not None
    dead.stop(0)  # its principal is forgotten, as a process that died (SQLite: an earlier life of this pid)
    if live_service.db.shared:  # as if the live worker ran in another process: only its advisory lock tells
        _LIVE_HOLDERS.discard(live.lease_holder)
    try:
        restarted = BatchWorker(_service(settings), lease_s=60)
        assert restarted.reclaim() == 1
        with live_service.db.reader() as s:
            statuses = {i.id: (i.status, i.lease_holder) for i in s.query(BatchItem)}
        assert statuses[first.item_id] == ("running", live.lease_holder)  # alive: left alone, its lease runs
        assert statuses[second.item_id] == ("queued", None)  # dead: queued again at once
        # an expired lease is claimable by any worker, the live principal's included
        with live_service.db.transaction() as s:
            s.get(BatchItem, first.item_id).lease_expires_at = utcnow() - timedelta(seconds=1)
        taken = restarted.claim(batch_id)
        assert taken is not None and {taken.item_id} <= {first.item_id, second.item_id}
        restarted.db.dispose()
    finally:
        _LIVE_HOLDERS.discard(live.lease_holder)
        live_service.db.release(live._alive)
        live_service.db.dispose()
        other_service.db.dispose()


@pytest.mark.both_databases
def test_principals_batches_take_turns(settings: Settings) -> None:
    """Round robin between principals: a long batch queued first does not keep another's waiting."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    service = _service(settings)
    first = _batch(service.db, 6, principal="alice")  # queued first, and long
    _batch(service.db, 2, principal="bob")
    _batch(service.db, 2, principal="carol")
    worker = BatchWorker(service, lease_s=60)
    try:
        principals = []
        while (claim := worker.claim()) is not None:
            with service.db.reader() as s:
                principals.append(s.get(Batch, claim.batch_id).principal)
            worker._finish(claim, "done", answer="a")
        expected = ["alice", "bob", "carol", "alice", "bob", "carol", "alice", "alice", "alice", "alice"]
        assert principals == expected, principals
        with service.db.reader() as s:
            assert s.get(Batch, first).status == "done"
    finally:
        _LIVE_HOLDERS.discard(worker.lease_holder)
