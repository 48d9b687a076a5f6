"""Conversations that remember, over the real model: earlier turns after the cached document prefix.

The document is a few lines; the first question carries something only the conversation knows (a
name the document never mentions), so the follow-up can be answered from the earlier turn alone.
Greedy sampling, short answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK

DOCUMENT = "The pass key is 52817.\nThe garden opens at nine.\nThe shed code is 4417.\n"
GREEDY = {"temperature": 0, "seed": 1}
INTRODUCTION = "My name is Zorblat. What is the pass key?"
FOLLOW_UP = "What is my name?"


def _client(tmp: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp, **settings)), base_url=LOOPBACK)  # type: ignore[arg-type]


def _session(client: TestClient) -> str:
    r = client.post("/api/documents", files={"file": ("notes.txt", DOCUMENT.encode(), "text/plain")})
    assert r.status_code in (200, 201), r.text  # 200: the same bytes were uploaded before
    s = client.post("/api/sessions", json={"document_ids": [r.json()["id"]]})
    assert s.status_code == 201, s.text
    return s.json()["id"]


def _ask(client: TestClient, session_id: str, question: str, **extra: object) -> dict:
    r = client.post(f"/api/sessions/{session_id}/questions",
                    json={"question": question, "max_tokens": 24, "sampling": GREEDY, **extra})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, dict, dict, dict]]:
    with _client(tmp_path_factory.mktemp("conversation")) as client:
        sid = _session(client)
        first = _ask(client, sid, INTRODUCTION)
        follow = _ask(client, sid, FOLLOW_UP)
        alone = _ask(client, sid, FOLLOW_UP, history=False)
        yield client, sid, first, follow, alone


def test_a_follow_up_is_answered_from_the_earlier_turn(conversation) -> None:
    _, _, first, follow, alone = conversation
    assert first["history"] == {"turns": 0, "dropped": 0, "enabled": True}
    assert follow["history"] == {"turns": 1, "dropped": 0, "enabled": True}
    assert "Zorblat" in follow["answer"], follow["answer"]
    # history: false answers as if the conversation had just started: the name is nowhere to be read
    assert alone["history"] == {"turns": 0, "dropped": 0, "enabled": False}
    assert "Zorblat" not in alone["answer"], alone["answer"]


def test_the_document_prefix_is_still_reused(conversation) -> None:
    _, _, first, follow, alone = conversation
    assert first["timings"]["prefix_source"] == "evaluated"
    prefix = first["timings"]["prefill_tokens"] - 40  # at least the documents and instructions
    for later in (follow, alone):
        assert later["timings"]["prefix_source"] == "memory"
        assert later["timings"]["cached_tokens"] >= prefix, later["timings"]
        # only the earlier turn and the question were read, not the document again
        assert later["timings"]["prefill_tokens"] < first["timings"]["prefill_tokens"]


def test_answers_and_history_carry_claims(conversation) -> None:
    client, sid, first, follow, _ = conversation
    for answer in (first, follow):
        assert isinstance(answer["claims"], list)
        assert set(answer["grounding"]) >= {"quoted", "supported", "unsupported", "grounded", "checked"}
        for claim in answer["claims"]:
            assert set(claim) == {"text", "status", "passage", "score", "missing", "nearest"}
    # the first answer names the pass key: that claim is grounded on the document's line 1
    grounded = [c for c in first["claims"] if c["status"] in ("quoted", "supported") and "52817" in c["text"]]
    assert grounded and grounded[0]["passage"]["line_start"] == 1, first["claims"]
    stored = [m for m in client.get(f"/api/sessions/{sid}").json()["messages"] if m["role"] == "assistant"]
    assert [m["claims"] for m in stored] == [first["claims"], follow["claims"], conversation[4]["claims"]]
    assert stored[1]["history"] == follow["history"]


def test_the_turn_cap_drops_the_oldest(tmp_path: Path) -> None:
    with _client(tmp_path, history_turns=1) as client:
        sid = _session(client)
        _ask(client, sid, INTRODUCTION)
        _ask(client, sid, "When does the garden open?")
        third = _ask(client, sid, FOLLOW_UP)
    assert third["history"] == {"turns": 1, "dropped": 1, "enabled": True}
    assert any("DOCQA_HISTORY_TURNS" in n and "oldest" in n for n in third["notes"]), third["notes"]
    assert "Zorblat" not in third["answer"]  # the turn that said it is the one left out


def test_the_token_budget_drops_the_oldest_first(tmp_path: Path) -> None:
    # No room reserved for history and an answer budget that takes the context's padding: what is left
    # after the documents holds the question, not the earlier turn as well.
    base = {"history_tokens": 0, "question_tokens": 16}
    with _client(tmp_path, answer_tokens=300, **base) as client:
        r = client.post("/api/documents", files={"file": ("notes.txt", DOCUMENT.encode(), "text/plain")})
        plan = client.post("/api/plan", json={"document_ids": [r.json()["id"]]}).json()
    budget = plan["n_ctx"] - plan["prompt_tokens"] - 16
    with _client(tmp_path, answer_tokens=budget, **base) as client:
        sid = _session(client)
        first = _ask(client, sid, INTRODUCTION)
        second = _ask(client, sid, FOLLOW_UP, max_tokens=budget)
    assert first["history"]["turns"] == 0
    assert second["history"] == {"turns": 0, "dropped": 1, "enabled": True}, second["history"]
    assert any("DOCQA_HISTORY_TOKENS" in n and "oldest" in n for n in second["notes"]), second["notes"]
