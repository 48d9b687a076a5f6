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
