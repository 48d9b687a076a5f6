"""The API additions the page needs (issue 14), over the real model and a real SQLite file: the plan's
reading estimate from measured rates and its snapshot flag, the models' size and quantization, the SSE
`queue` event, `continue_answer`, sessions titled by their first question, and reading.py's arithmetic."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.reading import ReadingRates, measured
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.support import LOOPBACK

DOCUMENT = b"The monthly rent is EUR 4,500.\nThe term is one year.\n"
GREEDY = {"temperature": 0, "seed": 1}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, answer_tokens=32)), base_url=LOOPBACK) as c:
        yield c


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_models_say_parameters_quantization_and_demo(client: TestClient) -> None:
    (model,) = client.get("/api/models").json()
    assert model["quantization"] == "Q4_1"
    assert model["size_label"] == "135M"
    assert 100_000_000 < model["parameters"] < 200_000_000
    assert model["embedded"] is True
    assert "path" not in model


def test_reading_estimate_snapshot_title_queue_event_and_continue(client: TestClient) -> None:
    doc = client.post("/api/documents", files={"file": ("lease.txt", DOCUMENT, "text/plain")}).json()
    plan = client.post("/api/plan", json={"document_ids": [doc["id"]]}).json()
    assert plan["reading"]["seconds"] is None and plan["reading"]["samples"] == 0
    assert "no reading" in plan["reading"]["basis"] and plan["snapshot"] is False

    sid = client.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
    refused = client.post(f"/api/sessions/{sid}/questions", json={"question": "", "continue_answer": True})
    assert refused.status_code == 422 and "no earlier answer" in refused.json()["detail"]

    r = client.post(f"/api/sessions/{sid}/questions", headers={"accept": "text/event-stream"},
                    json={"question": "What is the monthly rent?", "sampling": GREEDY, "max_tokens": 8})
    events = _events(r.text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "queue" and events[0][1]["ahead"] == 0 and kinds[-1] == "done", kinds
    session = client.get(f"/api/sessions/{sid}").json()
    assert session["title"] == "What is the monthly rent?"
    assert session["messages"][-1]["timings"]["model_identity"]

    # the reading was measured: the next plan of the same reading says how long it takes, or that a
    # snapshot exists once the runner has written it
    deadline = time.monotonic() + 60
    while not (plan := client.post("/api/plan", json={"document_ids": [doc["id"]]}).json())["snapshot"]:
        assert time.monotonic() < deadline, "no snapshot was written"
        time.sleep(0.25)
    reading = plan["reading"]
    assert reading["samples"] == 1 and reading["similar_depth"] is True and reading["rate_tokens_per_s"] > 0
    # seconds is rounded to a tenth, so a short reading (0.57 s) may read 0.6
    assert reading["seconds"] == pytest.approx(plan["prompt_tokens"] / reading["rate_tokens_per_s"], rel=0.05, abs=0.06)

    cut = client.get(f"/api/sessions/{sid}").json()["messages"][-1]
    assert cut["stop_reason"] == "length"
    cont = client.post(f"/api/sessions/{sid}/questions", json={"question": "", "continue_answer": True,
                                                               "sampling": GREEDY, "max_tokens": 8})
    assert cont.status_code == 200, cont.text
    assert cont.json()["history"]["turns"] == 0  # the cut answer goes on in its own turn, not as an earlier one
    messages = client.get(f"/api/sessions/{sid}").json()["messages"]
    assert [m.get("continues") for m in messages if m["role"] == "user"] == [False, True]
    assert client.get(f"/api/sessions/{sid}").json()["title"] == "What is the monthly rent?"  # kept
    # a true continuation: greedy, the cut answer and its continuation read as the one 16-token answer
    other = client.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
    whole = client.post(f"/api/sessions/{other}/questions", json={"question": "What is the monthly rent?",
                                                                  "sampling": GREEDY, "max_tokens": 16}).json()
    joined = {" ".join((cut["content"] + sep + cont.json()["answer"]).split()) for sep in ("", " ")}
    assert " ".join(whole["answer"].split()) in joined, (cut["content"], cont.json()["answer"], whole["answer"])


def test_an_explicit_title_is_kept(client: TestClient) -> None:
    doc = client.post("/api/documents", files={"file": ("lease.txt", DOCUMENT, "text/plain")}).json()
    sid = client.post("/api/sessions", json={"document_ids": [doc["id"]], "title": "Lease review"}).json()["id"]
    client.post(f"/api/sessions/{sid}/questions", json={"question": "What is the term?", "max_tokens": 4,
                                                         "sampling": GREEDY})
    assert client.get(f"/api/sessions/{sid}").json()["title"] == "Lease review"


def test_measured_rates_prefer_similar_depth(tmp_path: Path) -> None:
    assert measured({"prefill_tokens": 1000, "prefill_s": 4.0, "prefix_source": "evaluated"}) == (1000, 4.0)
    assert measured({"prefill_tokens": 1000, "prefill_s": 0.1, "prefix_source": "disk"}) is None  # not a reading
    assert measured({"prefill_tokens": 10, "prefill_s": 0.1}) is None  # too short to say anything

    class Fixed(ReadingRates):
        def samples(self, identity: str) -> list[tuple[int, float]]:
            return [(1000, 4.0), (1200, 6.0), (100_000, 2000.0)]  # 250 and 200 tok/s near 1K; 50 tok/s deep

    est = Fixed(None).estimate("m", 1100)  # type: ignore[arg-type]
    assert est.similar_depth and est.samples == 2 and est.rate_tokens_per_s == pytest.approx(220.0)
    deep = Fixed(None).estimate("m", 80_000)  # type: ignore[arg-type]
    assert deep.samples == 1 and deep.rate_tokens_per_s == pytest.approx(50.0) and deep.seconds == 1600.0
    far = Fixed(None).estimate("m", 20)  # type: ignore[arg-type]
    assert not far.similar_depth and far.samples == 3 and "other depths" in far.basis
