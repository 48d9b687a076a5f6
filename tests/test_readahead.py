"""Read-ahead and the model queue's priority classes, with the real model (SmolLM2-135M in its runner
process), the real app over ASGI and real KV snapshot files.

Read-ahead reads a session's documents in the background at the lowest priority; a question picks
up where it got to. Interactive questions come before batch items, which come before read-ahead: a
lower-class job yields at its next prefill slice (small slices here, DOCQA_N_BATCH=16, so the yield is
quick), keeps what it read as a partial snapshot, and resumes from it. Documents are a few hundred
tokens; answers a few tokens, greedy.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from litestar.testing import TestClient

from docqa.engine.engine import Engine
from docqa.engine.local.runner import local_host
from docqa.engine.local.state_cache import ContextConfig, StateCache, copy_state
from docqa.engine.models import ModelRegistry
from docqa.errors import QueueFull
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK, local_runtime, settled

GREEDY = {"temperature": 0, "seed": 1}
FILLER = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again."]


def haystack(n_lines: int, key: str = "52817") -> str:
    lines = [f"{FILLER[i % len(FILLER)]} Line {i}." for i in range(n_lines)]
    lines.insert(n_lines // 2, f"The pass key is {key}.")
    return "\n".join(lines) + "\n"


def app(tmp_path: Path, **kw: Any) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", seed=1, rate_uploads="0", rate_questions="0", **kw)
    return TestClient(create_app(settings), base_url=LOOPBACK)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app(tmp_path, read_ahead=True, n_batch=16) as c:
        yield c


def upload(client: TestClient, name: str, text: str) -> str:
    r = client.post("/api/documents", files={"file": (name, text.encode(), "text/plain")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def reading(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/api/read-ahead")
    assert r.status_code == 200, r.text
    return list(r.json()["sets"])


def wait(predicate: Any, timeout: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def model(client: TestClient) -> dict[str, Any]:
    return dict(client.get("/api/health").json()["details"]["models"]["default"])


def ask(client: TestClient, sid: str, question: str = "What is the pass key?", n: int = 12) -> dict[str, Any]:
    r = client.post(f"/api/sessions/{sid}/questions", json={"question": question, "max_tokens": n,
                                                            "sampling": GREEDY})
    assert r.status_code == 200, r.text
    return dict(r.json())


def kv_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "data").rglob("*.kv"))


# --- read-ahead -------------------------------------------------------------------------------------


def test_a_session_is_read_ahead_and_its_first_question_starts_from_it(client: TestClient, tmp_path: Path) -> None:
    doc = upload(client, "notes.txt", haystack(40))
    plan = client.post("/api/plan", json={"document_ids": [doc]}).json()
    assert plan["mode"] == "whole" and plan["already_read"] is False
    session = client.post("/api/sessions", json={"document_ids": [doc]}).json()
    done = wait(lambda: [s for s in reading(client) if s["state"] == "done"], what="the read-ahead to end")[0]
    assert done["document_ids"] == [doc] and done["tokens_done"] == done["tokens_total"] > 0, done
    health = client.get("/api/health").json()["details"]["read_ahead"]
    assert health["enabled"] is True and health["sets"][-1]["state"] == "done", health
    settled(client)
    assert len(kv_files(tmp_path)) == 1  # its snapshot, saved as a question's is
    assert client.post("/api/plan", json={"document_ids": [doc]}).json()["already_read"] is True

    answer = ask(client, session["id"])
    t = answer["timings"]
    assert t["prefix_source"] == "read-ahead", t
    assert t["cached_tokens"] >= 0.9 * done["tokens_total"], (t, done)
    assert t["read_ahead_tokens"] == done["tokens_total"], t
    assert "52817" in answer["answer"], answer["answer"]
    # a second POST for the same set does not read it again
    again = client.post("/api/read-ahead", json={"document_ids": [doc]})
    assert again.status_code == 202 and again.json()["state"] == "done", again.text


def test_a_question_asked_during_read_ahead_continues_from_where_it_got(client: TestClient) -> None:
    doc = upload(client, "long.txt", haystack(100))  # ~1,000 tokens, read 16 at a time
    session = client.post("/api/sessions", json={"document_ids": [doc]}).json()
    partly = wait(lambda: [s for s in reading(client) if s["state"] == "reading" and s["tokens_done"] >= 96],
                  what="the read-ahead to read some")[0]
    assert partly["tokens_done"] < partly["tokens_total"], partly
    answer = ask(client, session["id"])
    t = answer["timings"]
    assert t["prefix_source"] == "read-ahead", t
    assert t["read_ahead_tokens"] >= partly["tokens_done"] and t["cached_tokens"] >= partly["tokens_done"], (t, partly)
    assert t["cached_tokens"] < partly["tokens_total"], t  # it read the rest itself
    assert t["prefill_tokens"] < partly["tokens_total"] - partly["tokens_done"] + 40, t
    # the read-ahead, resumed afterwards, finds the prefix resident and ends at once
    final = wait(lambda: [s for s in reading(client) if s["state"] == "done"], what="the read-ahead to end")[0]
    assert final["tokens_done"] == final["tokens_total"]
    assert model(client)["yields"] >= 1


def test_a_deleted_documents_read_ahead_stops(client: TestClient, tmp_path: Path) -> None:
    doc = upload(client, "long.txt", haystack(100))
    client.post("/api/sessions", json={"document_ids": [doc]})
    wait(lambda: [s for s in reading(client) if s["state"] == "reading" and s["tokens_done"] > 0],
         what="the read-ahead to start")
    assert client.delete(f"/api/documents/{doc}").status_code == 204
    assert reading(client) == []  # stopped and forgotten at once (issue 29)
    wait(lambda: model(client)["classes"]["read_ahead"]["places"] == 0, what="the read-ahead to stop")
    wait(lambda: model(client)["runner"]["phase"] == "idle", what="the runner to be idle")
    time.sleep(0.5)
    assert kv_files(tmp_path) == []  # nothing of the deleted document was kept


def test_a_newer_set_replaces_the_older_and_delete_drops_what_is_left(tmp_path: Path) -> None:
    """The page ticks A, then B: with `?replace=true` B's read-ahead stops A's (nobody is about to ask about
    A); DELETE stops the caller's sets not done yet (nothing is ticked, or the page went away)."""
    with app(tmp_path, read_ahead=True, n_batch=16) as client:
        a = upload(client, "a.txt", haystack(100))
        b = upload(client, "b.txt", haystack(100, key="61244"))
        first = client.post("/api/read-ahead?replace=true", json={"document_ids": [a]})
        assert first.status_code == 202 and first.json()["state"] in ("queued", "reading"), first.text
        second = client.post("/api/read-ahead?replace=true", json={"document_ids": [b]})
        assert second.status_code == 202 and second.json()["state"] in ("queued", "reading"), second.text
        by_doc = {s["document_ids"][0]: s for s in reading(client)}
        assert by_doc[a]["state"] == "stopped" and "no longer chosen" in by_doc[a]["reason"], by_doc
        assert by_doc[b]["state"] in ("queued", "reading"), by_doc
        again = client.post("/api/read-ahead?replace=true", json={"document_ids": [b]})  # the same set is kept
        assert again.json()["state"] in ("queued", "reading", "done"), again.text
        dropped = client.delete("/api/read-ahead")
        assert dropped.status_code == 200 and dropped.json() == {"dropped": 1}, dropped.text
        wait(lambda: all(s["state"] == "stopped" for s in reading(client)), what="every read-ahead to stop")
        wait(lambda: model(client)["runner"]["phase"] in ("idle", None), what="the runner to be idle")
        assert client.delete("/api/read-ahead").json() == {"dropped": 0}


def test_read_ahead_off_means_nothing_runs(tmp_path: Path) -> None:
    with app(tmp_path, read_ahead=False) as client:
        doc = upload(client, "notes.txt", haystack(40))
        client.post("/api/sessions", json={"document_ids": [doc]})
        r = client.post("/api/read-ahead", json={"document_ids": [doc]})
        assert r.status_code == 202 and r.json()["state"] == "off", r.text
        time.sleep(2)
        m = model(client)
        assert m["runner"]["state"] == "unloaded" and m["runner"]["pid"] is None, m  # never even started
        assert reading(client) == [] and kv_files(tmp_path) == []
        assert client.get("/api/health").json()["details"]["read_ahead"]["enabled"] is False


def test_read_ahead_is_limited_in_tokens_and_a_question_picks_up_its_partial_snapshot(tmp_path: Path) -> None:
    with app(tmp_path, read_ahead=True, read_ahead_tokens=128, n_batch=32) as client:
        doc = upload(client, "notes.txt", haystack(60))
        session = client.post("/api/sessions", json={"document_ids": [doc]}).json()
        done = wait(lambda: [s for s in reading(client) if s["state"] == "done"], what="the read-ahead")[0]
        assert done["tokens_done"] == done["tokens_limit"] == 128 < done["tokens_total"], done
        settled(client)
        assert [p.name.endswith("-p.kv") for p in kv_files(tmp_path)] == [True]  # a partial snapshot, valid
        t = ask(client, session["id"])["timings"]
        assert t["prefix_source"] == "read-ahead" and t["cached_tokens"] == 128 == t["read_ahead_tokens"], t


# --- priorities -------------------------------------------------------------------------------------


def test_an_interactive_question_goes_before_a_batch_item_that_resumes_from_its_partial_state(tmp_path: Path) -> None:
    with app(tmp_path, read_ahead=False, n_batch=32) as client:
        long_doc = upload(client, "long.txt", haystack(130))  # ~1,300 tokens: the batch item reads it
        short_doc = upload(client, "short.txt", haystack(12, key="61244"))
        session = client.post("/api/sessions", json={"document_ids": [short_doc]}).json()
        batch = client.post("/api/batches", json={"document_ids": [long_doc], "questions": ["What is the pass key?"],
                                                  "max_tokens": 4, "sampling": GREEDY}).json()
        wait(lambda: (m := model(client))["running_class"] == "batch" and m["runner"]["phase"] == "reading",
             what="the batch item to read")
        time.sleep(1.0)  # well into its reading
        t0 = time.monotonic()
        answer = ask(client, session["id"], n=4)
        took = time.monotonic() - t0
        item = client.get(f"/api/batches/{batch['id']}").json()
        assert item["status"] != "done", item  # answered while the batch item was still reading
        assert answer["timings"]["queue_s"] < 3.0, answer["timings"]  # one 32-token slice, not the reading
        finished = wait(lambda: (b := client.get(f"/api/batches/{batch['id']}").json())["status"] == "done" and b,
                        timeout=240, what="the batch")
        t = finished["results"][0]["timings"]
        assert t["yields"] >= 1 and t["resumed_tokens"] > 0, t  # it went on from its partial state
        print(f"\ninteractive during a batch item: {took:.2f} s, queue {answer['timings']['queue_s']} s; "
              f"batch item resumed {t['resumed_tokens']} tokens")


def test_classes_are_served_in_order_and_principals_take_turns(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, seed=1, queue_size=8)
    registry = ModelRegistry(settings)
    engine = Engine(settings, registry)
    runtime = local_runtime(engine, registry.get(None))
    order: list[str] = []
    gate = threading.Event()
    try:
        with contextlib.ExitStack() as held:
            blocker = held.enter_context(runtime.reserve("interactive", "x"))
            first = runtime.submit(gate.wait, 30, ticket=blocker)
            time.sleep(0.2)
            tickets = {(k, p): held.enter_context(runtime.reserve(k, p))
                       for k in ("read_ahead", "batch", "interactive") for p in ("a", "b")}
            futures = []
            for n in range(2):  # a's jobs queued before b's, each class in reverse priority order
                for k in ("read_ahead", "batch", "interactive"):
                    for p in ("a", "b"):
                        futures.append(runtime.submit(order.append, f"{k}:{p}{n}", ticket=tickets[(k, p)]))
            gate.set()
            first.result(10)
            for f in futures:
                f.result(10)
        assert order == ["interactive:a0", "interactive:b0", "interactive:a1", "interactive:b1",
                         "batch:a0", "batch:b0", "batch:a1", "batch:b1",
                         "read_ahead:a0", "read_ahead:b0", "read_ahead:a1", "read_ahead:b1"], order
        assert runtime.status()["queue_depth"] == 0
    finally:
        engine.close()


def test_queue_bounds_and_retry_after_count_only_the_classes_ahead(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, seed=1, queue_size=0)
    registry = ModelRegistry(settings)
    engine = Engine(settings, registry)
    runtime = local_runtime(engine, registry.get(None))
    try:
        with runtime.reserve("batch", "a"), runtime.reserve("read_ahead", "a"):
            with runtime.reserve("interactive", "b"):  # a batch item (or a read-ahead) never keeps a person out
                assert runtime.status()["classes"]["interactive"]["places"] == 1
                with pytest.raises(QueueFull) as refused:
                    runtime.reserve("interactive", "c")
                assert refused.value.extra["priority"] == "interactive" and refused.value.extra["waiting"] == 0
                with pytest.raises(QueueFull):
                    runtime.reserve("batch", "c")
            with runtime.reserve("read_ahead", "c"):  # read-ahead is never refused nor counted
                assert runtime.status()["queue_depth"] == 1  # the batch item; read-aheads are not counted
        assert runtime.status()["queue_depth"] == 0
    finally:
        engine.close()


# --- snapshots written off the question's path --------------------------------------------------------


def test_a_snapshot_written_from_memory_is_the_file_llama_cpp_writes_and_loads(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, seed=1)
    spec = ModelRegistry(settings).get(None)
    host = local_host(spec, tmp_path / "state", 1 << 30)
    try:
        llm = host.context(ContextConfig(n_ctx=512, type_k="f16", type_v="f16", flash_attn=True, yarn_factor=None,
                                         n_ctx_train=8192, n_batch=64, n_ubatch=64))
        tokens = llm.tokenize(haystack(12).encode())
        llm.eval(tokens)
        cache = StateCache(tmp_path / "state", 1 << 30)
        assert cache.write("mine", tokens, copy_state(llm.ctx))
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        assert llama_cpp.llama_state_seq_save_file(llm.ctx, str(tmp_path / "theirs.kv").encode(), 0, arr, len(tokens))
        assert (tmp_path / "state" / "mine.kv").read_bytes() == (tmp_path / "theirs.kv").read_bytes()
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, -1, -1)
        assert cache.load(llm.ctx, "mine", tokens)
        mem = llama_cpp.llama_get_memory(llm.ctx)
        assert llama_cpp.llama_memory_seq_pos_max(mem, 0) + 1 == len(tokens)
        assert ctypes.sizeof(copy_state(llm.ctx)) > 0
    finally:
        host.free()


def test_read_ahead_evicts_only_snapshots_older_than_its_request(tmp_path: Path) -> None:
    cache = StateCache(tmp_path, 300)
    tmp_path.mkdir(exist_ok=True)
    for name, age in (("old", 100), ("recent", 1)):
        (tmp_path / f"{name}.kv").write_bytes(b"x" * 120)
        (tmp_path / f"{name}.json").write_text("{}")
        t = time.time() - age
        import os

        os.utime(tmp_path / f"{name}.kv", (t, t))
    asked = time.time() - 50  # the read-ahead was asked for after "old" was last used, before "recent"
    (tmp_path / "ahead.kv").write_bytes(b"x" * 120)
    (tmp_path / "ahead.json").write_text("{}")
    assert cache.evict(before=asked, keep="ahead")  # "old" goes, which is enough
    assert sorted(p.stem for p in cache.entries()) == ["ahead", "recent"]
    (tmp_path / "more.kv").write_bytes(b"x" * 120)
    (tmp_path / "more.json").write_text("{}")
    assert not cache.evict(before=asked, keep="more")  # only "recent" could go: it stays, the read-ahead goes
    assert sorted(p.stem for p in cache.entries()) == ["ahead", "recent"]
