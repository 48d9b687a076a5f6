"""Answers the documents do not support are withheld, over the real model (DOCQA_UNSUPPORTED_ANSWERS).

The document is a short lease; the questions ask about things it never mentions (a ship, a vault, a
guarantor), which the 135M model answers by inventing. Each question is asked of two services, each
with its own data directory: withheld by default, shown as the model wrote it with `show`. Greedy, short.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.engine.engine import WITHHELD
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK

LEASE = (
    "This Lease Agreement is made between Alice Martin (the Landlord) and Bob Stone (the Tenant).\n"
    "The Tenant shall pay a monthly rent of EUR 4,500 on the first day of each month.\n"
    "The pass key of the front door is 52817.\n"
    "This Agreement is governed by the laws of England and Wales.\n"
    "Either party may terminate this Agreement by giving thirty (30) days written notice.\n"
)
ABSENT = ["What is the name of the ship that carries the goods?", "What is the pass code of the blue vault?",
          "Who is the guarantor of this agreement?"]
SUPPORTED = {"What is the pass key of the front door?": "52817",
             "Which laws govern this agreement?": "England and Wales"}
GREEDY = {"temperature": 0, "seed": 1}


def _ask(client: TestClient, sid: str, question: str) -> dict:
    r = client.post(f"/api/sessions/{sid}/questions",
                    json={"question": question, "max_tokens": 32, "sampling": GREEDY, "history": False})
    assert r.status_code == 200, r.text
    return r.json()


@contextmanager
def _answers(tmp: Path, **settings: object) -> Iterator[tuple[TestClient, str, dict[str, dict]]]:
    with TestClient(create_app(Settings(data_dir=tmp, **settings)), base_url=LOOPBACK) as client:  # type: ignore[arg-type]
        r = client.post("/api/documents", files={"file": ("lease.txt", LEASE.encode(), "text/plain")})
        assert r.status_code in (200, 201), r.text
        s = client.post("/api/sessions", json={"document_ids": [r.json()["id"]]})
        assert s.status_code == 201, s.text
        sid = s.json()["id"]
        yield client, sid, {q: _ask(client, sid, q) for q in [*ABSENT, *SUPPORTED]}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, dict], dict[str, dict], list[dict]]]:
    tmp = tmp_path_factory.mktemp("withhold")
    with _answers(tmp / "show", unsupported_answers="show") as (_, _, shown):
        pass
    with _answers(tmp / "withhold") as (client, sid, withheld):
        history = client.get(f"/api/sessions/{sid}").json()["messages"]
        yield shown, withheld, history


def test_an_invented_answer_is_withheld_and_kept_as_the_draft(both) -> None:
    shown, withheld, history = both
    held = [q for q in ABSENT if withheld[q]["draft"] is not None]
    assert held, {q: shown[q]["answer"] for q in ABSENT}  # the model invents at least one of them
    for q in held:
        w, s = withheld[q], shown[q]
        assert w["answer"] == WITHHELD and w["citations"] == []
        assert w["draft"] == s["answer"] and s["draft"] is None  # the same greedy answer, shown with `show`
        def kept(a: dict) -> list[tuple]:  # the two services gave the document different ids
            return [(c["text"], c["status"], c["missing"], (c["passage"] or {}).get("text")) for c in a["claims"]]
        assert kept(w) == kept(s) and w["claims"]  # its claims are kept as they were
        assert not any(c["status"] in ("quoted", "supported") and
                       {"ship", "goods", "vault", "guarantor"} & set(c["text"].lower().replace("?", " ").split())
                       for c in w["claims"]), w["claims"]
        # the note quotes the draft for the reader, and names no operator setting
        assert any(s["answer"][:40] in n for n in w["notes"]), w["notes"]
        assert not any("DOCQA_" in n for n in w["notes"]), w["notes"]
        assert w["grounding"]["method"] == "idf"
        # the stored history holds what was shown, and the draft
        stored = next(m for m in history if m["role"] == "assistant" and m["draft"] == w["draft"])
        assert stored["content"] == WITHHELD
    for q in set(ABSENT) - set(held):  # not withheld: the model abstained, or its answer is about the question
        assert withheld[q]["answer"] == shown[q]["answer"]


def test_an_answer_the_documents_support_is_shown(both) -> None:
    shown, withheld, _ = both
    for question, fact in SUPPORTED.items():
        answer = withheld[question]
        assert answer["draft"] is None and fact in answer["answer"], answer
        assert answer["answer"] == shown[question]["answer"]
        assert answer["grounding"]["grounded"] >= 1


def test_the_lines_found_for_the_question_are_shown_before_it_in_a_longer_document(tmp_path: Path) -> None:
    # ~1,300 tokens of clauses (past SEARCH_MIN_TOKENS) with the pass key in the middle
    filler = [f"Clause {i}: notices under this agreement are given in writing to the address in Schedule {i}."
              for i in range(1, 61)]
    text = "\n".join([*filler[:30], "The pass key of the archive is 61904.", *filler[30:]]) + "\n"
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url=LOOPBACK) as client:  # type: ignore[arg-type]
        r = client.post("/api/documents", files={"file": ("clauses.txt", text.encode(), "text/plain")})
        s = client.post("/api/sessions", json={"document_ids": [r.json()["id"]]}).json()
        assert s["plan"]["prompt_tokens"] >= 1024, s["plan"]
        key = _ask(client, s["id"], "What is the pass key of the archive?")
        needle = {"marker": "[clauses.txt:L31]", "text": "The pass key of the archive is 61904."}
        assert key["search"]["lines"][0] == needle, key["search"]
        assert key["search"]["absent"] == []
        assert "61904" in key["answer"], key["answer"]
        vault = _ask(client, s["id"], "What is the code of the blue vault?")
        assert vault["search"] == {"lines": [], "absent": ["code", "blue", "vault"]}, vault["search"]
        # the document prefix is still reused: the lines come after it, with the question
        assert vault["timings"]["prefix_source"] == "memory", vault["timings"]


def test_continue_goes_on_from_the_draft_of_a_withheld_answer() -> None:
    from docqa.sessions import conversation
    from docqa.store.models import Message

    messages = [Message(role="user", content="Who carries the goods?", extra={}),
                Message(role="assistant", content=WITHHELD, extra={"draft": "The ship Aurora carries"}),
                Message(role="user", content="", extra={"continues": True}),
                Message(role="assistant", content=" the goods.", extra={})]
    # later questions do not see a withheld answer at all (docqa's note is not what the model said, the
    # draft is not what the user saw); "continue" goes on from the model's own words
    assert conversation(messages) == []
    assert conversation(messages, drafts=True) == [("Who carries the goods?", "The ship Aurora carries the goods.")]


def test_a_session_goes_on_after_a_withheld_answer(tmp_path: Path) -> None:
    """The withheld turn is not carried into the next question (neither docqa's note nor the draft), so
    the next answer is not steered by it: it answers from the document and is shown."""
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url=LOOPBACK) as client:  # type: ignore[arg-type]
        r = client.post("/api/documents", files={"file": ("lease.txt", LEASE.encode(), "text/plain")})
        sid = client.post("/api/sessions", json={"document_ids": [r.json()["id"]]}).json()["id"]

        def ask(question: str) -> dict:
            r = client.post(f"/api/sessions/{sid}/questions",
                            json={"question": question, "max_tokens": 32, "sampling": GREEDY})
            assert r.status_code == 200, r.text
            return r.json()

        held = [ask(q) for q in ABSENT]
        assert any(a["draft"] is not None for a in held), [a["answer"] for a in held]
        carried = sum(a["draft"] is None for a in held)
        after = ask("What is the pass key of the front door?")
        assert after["history"]["turns"] == carried  # the withheld turns are left out
        assert after["draft"] is None and "52817" in after["answer"], after
        assert "not shown as one" not in after["answer"] and WITHHELD not in after["answer"]
