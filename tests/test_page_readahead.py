"""Read-ahead on the page: ticking documents starts the service reading them (lowest priority) while the
person types; the plan says how far it has got, and the first answer starts from what was read. A real
`docqa serve` with read-ahead on (the rest of the suite runs with it off), the real model, Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, Server

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

NAME = "notice.txt"
NOTICE = "".join(f"Notice {i}. The office on floor {i} closes at {5 + i % 4} pm on Fridays.\n"
                 for i in range(24)).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("readahead-page") / "data",
                 env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "24", "DOCQA_READ_AHEAD": "true"})
    srv.start()
    yield srv
    srv.stop()


def test_ticking_documents_reads_them_ahead_and_the_answer_starts_from_it(browser: Any, server: Server) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=server.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.set_input_files("#file", files=[{"name": NAME, "mimeType": "text/plain", "buffer": NOTICE}])
    page.click("#upload-button")
    expect(page.locator("#upload-results > li.pending")).to_have_count(0)
    item = page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=NAME))
    box = item.locator("input[type=checkbox]")
    if not box.is_checked():
        box.check()
    line = page.locator("#plan-readahead")
    expect(line).to_be_visible()
    expect(line).to_contain_text("Read-ahead:")
    expect(line).to_have_attribute("data-state", "done", timeout=150_000)
    expect(line).to_contain_text(re.compile(r"done: [\d,]+ tokens read before the question"))
    health = httpx.get(f"{server.url}/api/health").json()["details"]["read_ahead"]
    assert [s["state"] for s in health["sets"]] == ["done"], health

    page.fill("#question", "When does the office on floor 3 close?")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=150_000)
    sid = httpx.get(f"{server.url}/api/sessions").json()[0]["id"]
    timings = httpx.get(f"{server.url}/api/sessions/{sid}").json()["messages"][-1]["timings"]
    assert timings["prefix_source"] == "read-ahead" and timings["read_ahead_tokens"] > 0, timings
    assert timings["cached_tokens"] >= 0.9 * timings["read_ahead_tokens"], timings
    context.close()


def test_only_the_ticked_set_reads_ahead_and_a_question_counts_as_its_reading(browser: Any, server: Server) -> None:
    """Ticking and unticking in a hurry starts one read-ahead (after a pause), for the set ticked last; the
    sets ticked before are dropped; unticking everything drops what is left. While a question reads the
    set, the plan says so (not "waiting for the model"), and afterwards counts it as read."""
    names = ["memo-a.txt", "memo-b.txt", "memo-c.txt"]
    for i, name in enumerate(names):
        body = "".join(f"Memo {i}, point {j}: the {j}th desk is cleaned on day {j % 7}.\n" for j in range(40))
        httpx.post(f"{server.url}/api/documents", files={"file": (name, body.encode(), "text/plain")})
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=server.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    posts: list[str] = []
    deletes: list[str] = []

    def seen_request(r: Any) -> None:
        if "/api/read-ahead" in r.url and r.method in ("POST", "DELETE"):
            (posts if r.method == "POST" else deletes).append(r.url)

    page.on("request", seen_request)
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    boxes = {n: page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=n))
             .locator("input[type=checkbox]") for n in [*names, NAME]}
    for box in boxes.values():
        if box.is_checked():
            box.uncheck()
    for n in names:  # three choices in quick succession: A, A+B, A+B+C, then B+C
        boxes[n].check()
    boxes[names[0]].uncheck()
    line = page.locator("#plan-readahead")
    expect(line).to_have_attribute("data-state", re.compile("queued|reading|yielded|done"), timeout=60_000)
    page.wait_for_timeout(2_000)
    assert len(posts) == 1 and "replace=true" in posts[0], posts  # only the choice that rested
    ids = {d["filename"]: d["id"] for d in httpx.get(f"{server.url}/api/documents").json()}
    mine = {ids[n] for n in names}
    sets = [s for s in httpx.get(f"{server.url}/api/read-ahead").json()["sets"] if mine & set(s["document_ids"])]
    assert [sorted(s["document_ids"]) for s in sets] == [sorted([ids[names[1]], ids[names[2]]])], sets

    for n in names[1:]:  # nothing ticked: what is not read yet is dropped
        boxes[n].uncheck()
    expect(line).to_be_hidden()
    page.wait_for_timeout(500)
    assert deletes, "unticking everything dropped nothing"
    states = [s["state"] for s in httpx.get(f"{server.url}/api/read-ahead").json()["sets"]]
    assert all(s in ("stopped", "done") for s in states), states

    boxes[names[2]].check()  # one set, then a question on that very set
    expect(line).to_have_attribute("data-state", re.compile("queued|reading|yielded|done"), timeout=60_000)
    page.fill("#question", "Which desk is cleaned on day 3?")
    page.click("#ask-button")
    expect(line).to_have_attribute("data-state", re.compile("asking|answered"), timeout=60_000)
    seen: list[str] = []
    while page.locator("#ask-status").inner_text() != "Answered.":
        seen.append(line.get_attribute("data-state") or "")
        page.wait_for_timeout(200)
        assert len(seen) < 900, "no answer within 3 minutes"
    expect(line).to_have_attribute("data-state", "answered")
    expect(line).to_contain_text("done: your question read these documents")
    assert set(seen) <= {"asking", "answered"}, seen  # never "waiting for the model" while the question reads it
    left = [s for s in httpx.get(f"{server.url}/api/read-ahead").json()["sets"] if s["state"] in ("queued", "reading")]
    assert left == [], left  # nothing reads on after the last question
    context.close()
