"""Documents are read once, also across a stop: the KV snapshots still being written when docqa stops are
written before it exits (bounded by DOCQA_SNAPSHOT_STOP_WAIT, and said in its log), a write pending when
a later job arrives waits for it only a few seconds, health shows the writes pending, and what a crash
mid-write leaves is swept at the next start (issue #30).

Real parts: the embedded model through llama-cpp-python, real sequence states copied from a context, the
real `docqa serve` process stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from docqa.engine.engine import Engine
from docqa.engine.local.runner import SnapshotWriter, local_host
from docqa.engine.local.state_cache import ContextConfig, StateCache, copy_state
from docqa.engine.models import ModelRegistry
from docqa.settings import Settings
from tests.browser import Server
from tests.test_faults import upload
from tests.test_runner import BEDS, SERVER_ENV, wait_for

CONFIG = ContextConfig(n_ctx=512, type_k="f16", type_v="f16", flash_attn=False, yarn_factor=None,
                       n_ctx_train=8192, n_batch=64, n_ubatch=64)


def read_state(tmp_path: Path) -> tuple[list[int], Any]:
    """A real sequence state: the model's context after reading a few lines, copied to memory."""
    spec = ModelRegistry(Settings(data_dir=tmp_path, seed=1)).get(None)
    host = local_host(spec, tmp_path / "unused", 0)
    try:
        llm = host.context(CONFIG)
        tokens = llm.tokenize(BEDS[:600].encode())
        llm.eval(tokens)
        return tokens, copy_state(llm.ctx)
    finally:
        host.free()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_pending_write_gives_way_to_a_job_for_a_bounded_time_and_a_stop_writes_it(tmp_path: Path) -> None:
    tokens, state = read_state(tmp_path)
    cache = StateCache(tmp_path / "state", 1 << 30)
    # a job that runs for ever: the write waits for it at most promote_after_s, then goes on beside it
    writer = SnapshotWriter(cache, promote_after_s=0.5)
    writer.busy()
    writer.put("promoted", tokens, state)
    wait_for(lambda: cache.has("promoted") and not cache.writing(), timeout=60)
    assert files(cache.root) == ["promoted.json", "promoted.kv"]

    # a job within its bound: the write waits, health sees it pending; a stop writes it at once and says so
    held = SnapshotWriter(cache, promote_after_s=3600)
    held.busy()
    held.put("held", tokens, state)
    pending = cache.pending_writes()
    assert (pending["pending"], pending["tokens"]) == (1, len(tokens)) and pending["bytes"] == len(state)
    assert not cache.has("held")
    report = held.finish(60)
    assert report["saved"] == 1 and report["saved_tokens"] == len(tokens) and report["abandoned"] == 0
    assert cache.has("held") and cache.pending_writes()["pending"] == 0
    assert files(cache.root) == ["held.json", "held.kv", "promoted.json", "promoted.kv"]
    # what the writer wrote is what llama.cpp loads
    spec = ModelRegistry(Settings(data_dir=tmp_path, seed=1)).get(None)
    host = local_host(spec, tmp_path / "unused", 0)
    try:
        assert cache.load(host.context(CONFIG).ctx, "held", tokens)
    finally:
        host.free()


def test_a_stop_whose_wait_runs_out_gives_the_write_up_and_leaves_no_temp_file(tmp_path: Path) -> None:
    tokens, state = read_state(tmp_path)
    cache = StateCache(tmp_path / "state", 1 << 30)
    writer = SnapshotWriter(cache, promote_after_s=3600)
    writer.busy()
    writer.put("late", tokens, state)
    report = writer.finish(0)
    assert report["saved"] == 0 and report["abandoned"] == 1 and report["abandoned_tokens"] == len(tokens)
    assert files(cache.root) == []  # no snapshot, no .kv.tmp, no .pending marker
    assert writer.pending("late") is None


def test_leftovers_of_a_crash_mid_write_are_swept_at_start_and_older_snapshots_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", seed=1)
    state = settings.state_dir
    state.mkdir(parents=True)
    (state / "older.kv").write_bytes(b"k" * 64)  # a whole snapshot written before the crash
    (state / "older.json").write_text(json.dumps({"n_tokens": 1}))
    leftovers = ["inflight.4242-0a0b0c0d.kv.tmp", "inflight.4242-0a0b0c0d.json.tmp", "inflight.4242.pending",
                 "half.kv"]
    for name in leftovers:
        (state / name).write_text("{}")
    old = time.time() - 3600
    for name in [*leftovers, "older.kv", "older.json"]:
        os.utime(state / name, (old, old))
    (state / "busy.999.pending").write_text("{}")  # another instance's write, now: left alone
    registry = ModelRegistry(settings)
    engine = Engine(settings, registry)
    try:
        engine.backend(registry.get(None))  # the sweep runs when the local model's backend is opened
        assert files(state) == ["busy.999.pending", "older.json", "older.kv"]
    finally:
        engine.close()


def test_sigterm_right_after_a_follow_up_keeps_the_reading_for_the_next_start(tmp_path: Path) -> None:
    """The issue's sequence: a cold question, a follow-up, SIGTERM 0 s after its answer, a restart: the
    next question reads the documents back from disk, and the stop said what it wrote."""
    server = Server(tmp_path / "data", env=SERVER_ENV).start()
    beds = "\n".join(BEDS.splitlines()[:12])  # short: the machine running the suite may be loaded
    ask = {"max_tokens": 4, "sampling": {"temperature": 0, "seed": 1}}
    try:
        with httpx.Client(base_url=server.url, timeout=900) as http:
            doc = upload(http, "beds.txt", beds.encode())
            sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
            url = f"/api/sessions/{sid}/questions"
            cold = http.post(url, json={**ask, "question": "What does bed 4 grow?"}).json()
            assert cold["timings"]["prefix_source"] == "evaluated", cold
            follow = http.post(url, json={**ask, "question": "What does bed 5 grow?"}).json()
            assert follow["timings"]["prefix_source"] == "memory", follow
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)
        server.proc.wait(120)
        log = server.log_tail(60)
        assert "runner" in log and ("stopped after writing 1 pending KV snapshot" in log
                                    or "no KV snapshot was pending" in log), log
        state = tmp_path / "data" / "state"
        names = files(state)
        assert not [n for n in names if n.endswith((".tmp", ".pending"))], names
        assert [n for n in names if n.endswith(".kv")], names

        server.start()
        with httpx.Client(base_url=server.url, timeout=900) as http:
            after = http.post(url, json={**ask, "question": "What does bed 6 grow?"}).json()
        assert after["timings"]["prefix_source"] == "disk", after
        assert after["timings"]["prefill_tokens"] < 100, after  # the question only, not the documents
    finally:
        server.stop()
