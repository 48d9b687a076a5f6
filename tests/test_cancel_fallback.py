"""A context llama.cpp cannot allocate falls down the ladder instead of failing; a client that goes
away cancels its question."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import httpx
import pytest

from docqa.engine.engine import AskOptions, Engine
from docqa.engine.models import ModelRegistry
from docqa.settings import Settings
from docqa.store.models import Document, Section
from tests.browser import Server

PASSKEY_TEXT = "The pass key is 52817.\nKeep the pass key secret.\n"


def test_allocation_failure_falls_back_down_the_ladder_and_says_so(tmp_path):
    settings = Settings(data_dir=tmp_path, seed=1, state_cache_bytes=0)
    registry = ModelRegistry(settings)
    spec = registry.get(None)
    engine = Engine(settings, registry)
    doc = Document(id="d", filename="passkey.txt", kind="text")
    sources = [(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=2, text=PASSKEY_TEXT.strip())])]
    try:
        plan = engine.plan(spec, sources)
        assert plan.mode == "whole"
        # A plan the host cannot honour (4M tokens: ~96 GB of f16 KV), as if memory vanished after planning.
        assert plan.kv is not None
        impossible = replace(plan, n_ctx=4_194_304, kv=replace(plan.kv, yarn_factor=None))
        answer = engine.answer(spec, impossible, sources, "What is the pass key?",
                               AskOptions(max_tokens=16, sampling={"temperature": 0, "seed": 1}))
    finally:
        engine.close()
    assert answer.mode == "chunked"
    failures = [n for n in answer.notes if "could not create" in n]
    assert [("f16" in n, "q8_0" in n, "q4_0" in n) for n in failures] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert answer.answer


def _sse(lines: list[str]) -> list[tuple[str, dict]]:
    events, kind = [], None
    for line in lines:
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and kind:
            events.append((kind, json.loads(line.split(":", 1)[1])))
    return events


def test_a_client_that_disconnects_cancels_its_question(tmp_path):
    server = Server(tmp_path / "data", env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "400"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            doc = http.post("/api/documents", files={"file": ("passkey.txt", PASSKEY_TEXT.encode(), "text/plain")})
            session = http.post("/api/sessions", json={"document_ids": [doc.json()["id"]]}).json()
            ask = {"question": "Write a long story about the pass key, in many paragraphs.", "max_tokens": 400,
                   "sampling": {"temperature": 0.8, "seed": 3}}
            seen: list[str] = []
            with http.stream("POST", f"/api/sessions/{session['id']}/questions", json=ask,
                             headers={"accept": "text/event-stream"}) as stream:
                for line in stream.iter_lines():
                    seen.append(line)
                    if line.startswith("event: token"):
                        break  # the client goes away mid-answer
            assert any(kind == "token" for kind, _ in _sse(seen + ["data: {}"]))
            wait_idle(http)
            # A cancelled answer is never stored, half-written or otherwise.
            assert http.get(f"/api/sessions/{session['id']}").json()["messages"] == []

            # The same without streaming: a JSON request whose client gives up before the answer.
            t0 = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                http.post(f"/api/sessions/{session['id']}/questions", json=ask, timeout=httpx.Timeout(60, read=2))
            wait_idle(http)
            cancelled_s = time.monotonic() - t0
            assert http.get(f"/api/sessions/{session['id']}").json()["messages"] == []
            # …and the model is free for the next question.
            r = http.post(f"/api/sessions/{session['id']}/questions",
                          json={"question": "What is the pass key?", "max_tokens": 16,
                                "sampling": {"temperature": 0, "seed": 1}})
            assert r.status_code == 200 and "52817" in r.json()["answer"]
            assert len(http.get(f"/api/sessions/{session['id']}").json()["messages"]) == 2
    finally:
        server.stop()
    print(f"\nJSON question given up after 2 s: the model was free again {cancelled_s:.1f} s after it was asked")


def wait_idle(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        models = http.get("/api/health").json()["details"]["models"]
        if all(m["queue_depth"] == 0 for m in models.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"the model never became idle: {models}")
