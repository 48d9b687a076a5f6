"""The page against a real `docqa serve` that has an API key (Debian's Chromium through Playwright):
it asks for the key, keeps it for the tab, sends it as a header on every request (never in a URL),
then uploads, lists and downloads a batch's CSV; a wrong key is refused with a sentence. The model
answers one 8-token batch question over a one-line document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, Server, launch_chromium

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

KEY = "page-test-key-5f0c2a9e41d3b7"
NAME = "keyed-notes.txt"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"DOCQA_API_KEYS": f"reader:{KEY}", "DOCQA_ANSWER_TOKENS": "8", "DOCQA_SEED": "1"}
    srv = Server(tmp_path_factory.mktemp("page-auth") / "data", env=env)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(server: Server) -> Iterator[tuple[Any, list[str], list[dict[str, Any]]]]:
    with playwright_sync.sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
        context.set_default_timeout(20_000)
        pg = context.new_page()
        problems: list[str] = []
        requests: list[dict[str, Any]] = []
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        pg.on("request", lambda r: requests.append({"url": r.url, "headers": r.headers}))
        yield pg, problems, requests
        context.close()
        browser.close()


def test_page_asks_for_the_key_then_uploads_and_lists(page: tuple[Any, list[str], list[dict[str, Any]]],
                                                      server: Server) -> None:
    pg, problems, requests = page
    pg.goto("/")
    expect(pg.locator("body")).to_have_attribute("data-ready", "true")
    expect(pg.locator("#access")).to_be_visible()
    expect(pg.locator("#api-key")).to_be_focused()
    assert pg.locator(".layout").evaluate("e => e.inert") is True

    pg.fill("#api-key", "not-the-key")
    pg.click("#api-key-button")
    expect(pg.locator("#access-status")).to_contain_text("did not accept")
    expect(pg.locator("#access")).to_be_visible()

    pg.fill("#api-key", KEY)
    pg.click("#api-key-button")
    expect(pg.locator("#access")).to_be_hidden()
    assert pg.locator(".layout").evaluate("e => e.inert") is False
    expect(pg.locator("#model option")).not_to_have_count(0)

    pg.set_input_files("#file", files=[{"name": NAME, "mimeType": "text/plain", "buffer": b"Keyed words.\n"}])
    pg.click("#upload-button")
    expect(pg.locator("#upload-results > li.ok")).to_contain_text("stored")
    expect(pg.locator("#documents li.doc .filename")).to_have_text([NAME])
    expect(pg.locator("#plan-text")).to_contain_text("Whole document")
    assert pg.evaluate("sessionStorage.getItem('docqa.apiKey')") == KEY

    # the document is the key's principal's, and the server still refuses a keyless caller
    assert httpx.get(f"{server.url}/api/documents").status_code == 401
    listed = httpx.get(f"{server.url}/api/documents", headers={"X-API-Key": KEY}).json()
    assert [d["filename"] for d in listed] == [NAME]

    # a reload in the same tab keeps the key: no question asked again
    pg.reload()
    expect(pg.locator("body")).to_have_attribute("data-ready", "true")
    expect(pg.locator("#access")).to_be_hidden()
    expect(pg.locator("#documents li.doc .filename")).to_have_text([NAME])

    # the batch CSV comes through fetch() with the key in a header, saved from a blob: link
    pg.locator("#documents input[type=checkbox]").check()
    pg.click("#tab-batch")
    pg.fill("#batch-questions", "What words?")
    pg.click("#batch-run")
    expect(pg.locator("#batch-csv")).to_be_visible(timeout=150_000)
    with pg.expect_download() as download:
        pg.click("#batch-csv")
    assert download.value.suggested_filename.startswith("batch-")
    csv_text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert csv_text.startswith("filename,question_no,question,answer") and NAME in csv_text

    api_calls = [r for r in requests if "/api/" in r["url"]]
    assert api_calls and all(KEY not in r["url"] for r in requests)
    keyed = [r for r in api_calls if r["headers"].get("x-api-key") == KEY]
    assert len(keyed) >= len(api_calls) - 2  # all but the two tries before a key was accepted
    # the refused tries log "Failed to load resource … 401"; anything else (a CSP violation, a script error) fails
    unexpected = [p for p in problems if "Failed to load resource" not in p]
    assert not unexpected, unexpected
