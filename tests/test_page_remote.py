"""The page, unchanged, with a remote model: a real `docqa serve` in front of a real llama-server
(tests/llama_servers.py) serving the embedded SmolLM2, driven in Debian's Chromium. Upload, pick the
remote model, see the plan in the server's terms, ask, read the streamed answer and open its source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from docqa.fetch import embedded_model_path
from docqa.settings import Settings
from tests.browser import CHROMIUM, Server, new_page
from tests.llama_servers import LlamaServer

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

ANSWER_WAIT_MS = 150_000
NAME = "memo.txt"
MEMO = b"Internal memo.\nThe pass key is 52817.\nKeep the pass key secret.\n"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(embedded_model_path(Settings().models_dir), tmp_path_factory.mktemp("ls") / "log",
                         ctx=2048).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, llama: LlamaServer) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("remote-page") / "data",
                 env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "32", "DOCQA_MODELS": f"gpu={llama.url}"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    yield pg
    context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def test_the_page_asks_a_remote_model_and_opens_the_source(page: Any, server: Server) -> None:
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    options = page.locator("#model option")
    expect(options.filter(has_text="gpu")).to_have_count(1)
    page.select_option("#model", "gpu")
    page.set_input_files("#file", files=[{"name": NAME, "mimeType": "text/plain", "buffer": MEMO}])
    page.click("#upload-button")
    expect(page.locator("#upload-results > li.pending")).to_have_count(0)
    page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=NAME)).locator(
        "input[type=checkbox]").check()
    expect(page.locator("#plan")).to_contain_text(re.compile(r"served context 2,048 tokens on http://127\.0\.0\.1"))
    page.fill("#question", "What is the pass key?")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    msg = page.locator("#history .msg.assistant").last
    expect(msg.locator(".answer")).to_contain_text("52817")
    expect(msg.locator(".meta")).to_contain_text(re.compile(r"first word after [\d.]+ s · total [\d.]+ s"))

    sid = httpx.get(f"{server.url}/api/sessions").json()[0]["id"]
    stored = httpx.get(f"{server.url}/api/sessions/{sid}").json()
    assert stored["model"] == "gpu" and stored["plan"]["backend"] == "remote"
    claims = stored["messages"][-1]["claims"]
    grounded = [i for i, c in enumerate(claims) if c["passage"]]
    assert grounded, claims
    # the answer's sentence opens its passage in the viewer, from the remote answer as from a local one
    rows = msg.locator(".claims > li.claim")
    rows.nth(grounded[0]).locator(".chip").first.click()
    viewer = page.locator("#viewer")
    expect(viewer.locator("mark.quote").first).to_be_visible()
    expect(viewer).to_contain_text("52817")
    health = httpx.get(f"{server.url}/api/health").json()["details"]["models"]["gpu"]
    assert [s["state"] for s in health["servers"]] == ["up"]
