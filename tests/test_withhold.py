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
        yield client, sid, {q: _ask(client, sid, q) for q in [*ABSENT, "What is the monthly rent?"]}


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
        assert any(s["answer"][:40] in n and "DOCQA_UNSUPPORTED_ANSWERS=show" in n for n in w["notes"]), w["notes"]
        # the stored history holds what was shown, and the draft
        stored = next(m for m in history if m["role"] == "assistant" and m["draft"] == w["draft"])
        assert stored["content"] == WITHHELD
    for q in set(ABSENT) - set(held):  # not withheld: the model abstained, or its answer is about the question
        assert withheld[q]["answer"] == shown[q]["answer"]


def test_an_answer_the_documents_support_is_shown(both) -> None:
    shown, withheld, _ = both
    rent = withheld["What is the monthly rent?"]
    assert rent["draft"] is None and "4,500" in rent["answer"], rent
    assert rent["answer"] == shown["What is the monthly rent?"]["answer"]
    assert rent["grounding"]["grounded"] >= 1
