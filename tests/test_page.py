"""The upload-and-ask page in a real browser (Debian's Chromium through Playwright) against a real
`docqa serve` with the real embedded model: upload, plan, streamed answer, citation viewer, sessions
across a server restart, Arabic, refusals, 360 px, keyboard, security headers, batch.

Screenshots of the main states go to a temporary folder (printed; DOCQA_SCREENSHOTS=DIR to choose it);
DOCQA_UPDATE_SCREENSHOT=1 also copies the citation view to docs/screenshot.png for the README.
The tests in this file build on each other (one server, one data folder) and run in file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, REPO, Server, new_page, overflow_x
from tests.builders import make_png, make_zip

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

STATIC = REPO / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PASSKEY_NAME = "passkey.txt"
PASSKEY = b"The pass key is 52817.\nKeep the pass key secret.\n"
QUESTION = "What is the pass key?"
ARABIC_NAME = "عقد.txt"
ARABIC = "هذا العقد بين الطرفين.\nمدة العقد سنة واحدة.\nالرقم السري هو ٥٢٨١٧.\n".encode()
ANSWER_WAIT_MS = 150_000  # the tiny model on a busy 2-core machine
shared: dict[str, Any] = {}


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("page") / "data", env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "48"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ["DOCQA_SCREENSHOTS"]) if os.environ.get("DOCQA_SCREENSHOTS") else \
        tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    yield pg
    context.close()
    # A refused upload logs "Failed to load resource … 4xx"; anything else (a CSP violation, a script error) fails.
    unexpected = [p for p in problems if "Failed to load resource" not in p]
    assert not unexpected, unexpected


def open_page(page: Any) -> None:
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def upload(page: Any, *files: tuple[str, bytes, str]) -> None:
    page.set_input_files("#file", files=[{"name": n, "mimeType": t, "buffer": b} for n, b, t in files])
    page.click("#upload-button")
    expect(page.locator("#upload-results > li")).to_have_count(len(files))
    expect(page.locator("#upload-results > li.pending")).to_have_count(0)


def doc_item(page: Any, filename: str) -> Any:
    return page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=filename))


def shot(page: Any, path: Path) -> None:
    """A full-page screenshot from the top (sticky panels drawn where a reader first sees them)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def api_documents(server: Server) -> dict[str, dict[str, Any]]:
    return {d["filename"]: d for d in httpx.get(f"{server.url}/api/documents").json()}


# ---- static checks (no browser) -----------------------------------------------------------------


def test_static_files_insert_no_html_and_load_nothing_remote() -> None:
    scripts = {p.name: p.read_text() for p in STATIC.glob("*.js")}
    assert scripts, "static/*.js missing"
    for name, text in scripts.items():
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert banned not in text, f"{name} uses {banned}"
    own = [p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts]
    for path in own:
        if path.suffix == ".js" and path.parent != STATIC:
            raise AssertionError(f"{path} is a script outside static/ and static/vendor/")
    vendored = {p.name for p in (STATIC / "vendor").glob("*.js")}
    listed = (STATIC / "vendor" / "README.md").read_text()
    assert vendored and all(name in listed for name in vendored), f"vendored without version and licence: {vendored}"
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    for path in own:  # vendored files name their project's site in comments; the CSP blocks any remote load
        remote = re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text())
        assert not remote, f"{path.name} names a remote URL: {remote.group(0) if remote else ''}"


def test_security_headers_on_every_response(server: Server) -> None:
    for path in ("/", "/static/app.js", "/api/documents", "/api/no-such-thing"):
        r = httpx.get(server.url + path)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["referrer-policy"] == "no-referrer", path
    assert httpx.get(server.url + "/static/app.js").headers["content-type"].startswith("text/javascript")
    swagger = httpx.get(server.url + "/schema/swagger")
    assert swagger.status_code == 200 and swagger.headers["content-security-policy"] == CSP  # vendored, no inline JS
    assert swagger.headers["x-content-type-options"] == "nosniff"


# ---- the page -----------------------------------------------------------------------------------


def test_upload_plan_ask_stream_and_cite(page: Any, server: Server, shots: Path) -> None:
    open_page(page)
    expect(page.locator("#model option")).not_to_have_count(0)
    upload(page, (PASSKEY_NAME, PASSKEY, "text/plain"))
    stored = api_documents(server)[PASSKEY_NAME]
    item = doc_item(page, PASSKEY_NAME)
    # the estimate first, until the plan over this document alone counts it exactly (on a fast CPU the
    # plan may already be back)
    expect(item).to_contain_text(re.compile(
        rf"≈{stored['token_estimate']:,} tokens \(estimate\)|[\d,]+ tokens \(exact, with instructions\)"))
    expect(item).to_contain_text("1 section")
    expect(item.locator("input[type=checkbox]")).to_be_checked()  # a fresh upload is chosen
    expect(page.locator("#upload-results > li.ok")).to_contain_text("stored")

    plan = page.locator("#plan-text")
    expect(plan).to_contain_text(re.compile(r"Whole document, [\d,]+ tokens in a [\d,]+-token context"))
    expect(plan).to_contain_text("available")
    expect(page.locator("#plan-numbers")).to_contain_text("KV cache")
    expect(page.locator("#plan-reason")).to_contain_text("Why: the whole document fits in memory")
    counted = httpx.post(f"{server.url}/api/plan", json={"document_ids": [stored["id"]]}).json()["prompt_tokens"]
    expect(item).to_contain_text(f"{counted:,} tokens (exact, with instructions)")
    shot(page, shots / "1-uploaded-and-planned.png")

    # Count the answer's text changes while it is still streaming (tokens arriving one by one).
    page.evaluate("""() => {
        window.__streamed = 0;
        new MutationObserver((records) => {
            for (const r of records) if (r.target.closest?.('.answer.streaming')) window.__streamed++;
        }).observe(document.getElementById('history'), {childList: true, subtree: true, characterData: true});
    }""")
    page.fill("#question", QUESTION)
    page.click("#ask-button")
    expect(page.locator("#stop-button")).to_be_visible()
    answer = page.locator("#history .msg.assistant .answer").last
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    expect(answer).to_contain_text("52817")
    assert page.evaluate("window.__streamed") >= 3, "the answer did not stream in"
    expect(page.locator("#stop-button")).to_be_hidden()
    expect(page.locator("#history .msg.user .question-text")).to_have_text(QUESTION)
    for selector in ("#history .answer", "#history .question-text", "#documents .filename", "#question"):
        for el in page.locator(selector).all():
            assert el.get_attribute("dir") == "auto", selector
    expect(page.locator("#history .msg.assistant .meta").last).to_contain_text("tokens")

    session = httpx.get(f"{server.url}/api/sessions").json()[0]
    shared["session_id"] = session["id"]
    message = httpx.get(f"{server.url}/api/sessions/{session['id']}").json()["messages"][-1]
    assert "52817" in message["content"]
    assert message["citations"], f"the model's answer got no citation: {message['content']!r}"
    citation = message["citations"][0]
    chips = page.locator("#history .msg.assistant .citations .chip")
    expect(chips).to_have_count(len(message["citations"]))
    expect(page.locator("#sessions button.session[aria-current=true]")).to_contain_text(PASSKEY_NAME)
    shot(page, shots / "2-answered.png")

    chips.first.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-where")).to_contain_text(PASSKEY_NAME)
    expect(viewer.locator(".section-where")).to_contain_text("Line")
    mark = viewer.locator("mark.quote")
    expect(mark).to_have_count(1)
    expect(mark).to_have_text(citation["quote"])
    expect(viewer.locator(".section-text")).to_contain_text("Keep the pass key secret.")
    assert viewer.locator(".section-text").get_attribute("dir") == "auto"
    # beside the answer on a wide screen
    answer_box, viewer_box = answer.bounding_box(), viewer.bounding_box()
    assert viewer_box["x"] > answer_box["x"] + answer_box["width"] - 1
    page.evaluate("document.querySelector('#history .msg.assistant:last-child').scrollIntoView({block: 'center'})")
    expect(viewer).to_be_in_viewport()  # sticky beside the answer
    page.set_viewport_size({"width": 1366, "height": 1180})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "3-citation.png"), full_page=False)
    if os.environ.get("DOCQA_UPDATE_SCREENSHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shots / "3-citation.png", REPO / "docs" / "screenshot.png")
    page.click("#viewer-close")
    expect(viewer).to_be_hidden()
    expect(chips.first).to_be_focused()


def test_session_history_after_reload_and_server_restart(page: Any, server: Server, shots: Path) -> None:
    if "session_id" not in shared:
        pytest.skip("needs the session of test_upload_plan_ask_stream_and_cite")

    def reopen() -> None:
        button = page.locator("#sessions button.session", has_text=PASSKEY_NAME)
        expect(button).to_have_count(1)
        button.click()
        expect(page.locator("#history .msg.user .question-text")).to_have_text(QUESTION)
        expect(page.locator("#history .msg.assistant .answer")).to_contain_text("52817")
        expect(page.locator("#history .msg.assistant .chip")).not_to_have_count(0)
        expect(page.locator("#session-label")).to_contain_text(PASSKEY_NAME)
        expect(doc_item(page, PASSKEY_NAME).locator("input[type=checkbox]")).to_be_checked()
        expect(page.locator("#plan-text")).to_contain_text("Whole document")

    open_page(page)
    expect(page.locator("#history .msg")).to_have_count(0)
    reopen()
    server.stop()
    server.start()
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    reopen()
    shot(page, shots / "4-reopened-after-restart.png")


def test_stop_cancels_the_question_on_the_server(page: Any, server: Server) -> None:
    if "session_id" not in shared:
        pytest.skip("needs the session of test_upload_plan_ask_stream_and_cite")
    sid = shared["session_id"]
    stored = len(httpx.get(f"{server.url}/api/sessions/{sid}").json()["messages"])
    open_page(page)
    page.locator("#sessions button.session", has_text=PASSKEY_NAME).click()
    expect(page.locator("#history .msg.assistant")).to_have_count(stored // 2)
    page.fill("#question", "Tell a very long story about the pass key, in many paragraphs.")
    page.click("#ask-button")
    expect(page.locator("#stop-button")).to_be_visible()
    page.click("#stop-button")
    failed = page.locator("#history .msg.assistant.failed")
    expect(failed.locator(".error")).to_have_text("Stopped. This question and its partial answer were not stored.")
    expect(page.locator("#stop-button")).to_be_hidden()
    expect(page.locator("#ask-button")).to_be_enabled()
    # The server cancelled it: the model is free again and nothing was stored (an answer left running
    # would have been written when it finished).
    deadline = time.monotonic() + 60
    while (m := httpx.get(f"{server.url}/api/health").json()["details"]["models"]["default"])["queue_depth"]:
        assert time.monotonic() < deadline, m
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(httpx.get(f"{server.url}/api/sessions/{sid}").json()["messages"]) == stored


def test_several_files_at_once_zip_skips_and_refusals_show_the_reason(page: Any, server: Server) -> None:
    png = make_png()
    codebase = make_zip({"src/app.py": b"def main():\n    return 52817\n", "assets/logo.png": png})
    hostile_name = '<img src=x onerror="window.__pwned=1">.txt'
    open_page(page)
    upload(page, ("codebase.zip", codebase, "application/zip"), ("x.png", png, "image/png"),
           (hostile_name, b"plain words\n", "text/plain"))
    refused = httpx.post(f"{server.url}/api/documents", files={"file": ("x.png", png, "image/png")})
    assert refused.status_code in (415, 422)
    line = page.locator("#upload-results > li.error")
    expect(line).to_have_count(1)
    expect(line).to_contain_text("x.png")
    expect(line.locator(".reason")).to_have_text(refused.json()["detail"])

    stored = api_documents(server)["codebase.zip"]
    assert stored["skipped"], stored
    item = doc_item(page, "codebase.zip")
    expect(item.locator(".skipped summary")).to_contain_text(f"{len(stored['skipped'])} file")
    item.locator(".skipped summary").click()
    expect(item.locator(".skipped li").first).to_contain_text(stored["skipped"][0]["path"])
    expect(item.locator(".skipped li").first).to_contain_text(stored["skipped"][0]["reason"])
    expect(page.locator("#upload-results > li.ok")).to_have_count(2)

    # A file name that looks like HTML stays text.
    name = next(n for n in api_documents(server) if n.startswith("<img"))
    expect(doc_item(page, name)).to_have_count(1)
    assert page.locator("#documents img, #upload-results img").count() == 0
    assert page.evaluate("window.__pwned") is None


def _sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {kind}\r\ndata: {json.dumps(data, ensure_ascii=False)}\r\n\r\n" for kind, data in events)


def test_stream_rendering_reasoning_progress_and_unverified_citations(page: Any, server: Server) -> None:
    """The question endpoint is replaced by a scripted event stream (SmolLM2 does not think and rarely
    cites), to check what the page makes of each kind of event."""
    zip_doc = api_documents(server)["codebase.zip"]
    cited = {"document_id": zip_doc["id"], "filename": "codebase.zip", "page": None, "path": "src/app.py",
             "line_start": 2, "line_end": 2, "quote": "return 52817", "verified": True, "origin": "model",
             "marker": "[src/app.py:L2]"}
    unverified = {**cited, "line_start": 1, "line_end": 1, "quote": "a quote found nowhere", "verified": False}
    body = _sse(
        ("progress", {"phase": "map", "chunk": 1, "chunks": 3}),
        ("progress", {"tokens_done": 512, "tokens_total": 2048, "tokens_per_s": 256.0, "eta_s": 6.0}),
        ("progress", {"tokens_done": 2048, "tokens_total": 2048, "tokens_per_s": 256.0, "eta_s": 0.0}),
        ("thinking", {"text": "The user wants the value "}),
        ("thinking", {"text": "that main() returns."}),
        ("token", {"text": "main() returns "}),
        ("token", {"text": "52817."}),
        ("done", {"answer": "main() returns 52817.", "thinking": "The user wants the value that main() returns.",
                  "citations": [cited, unverified], "mode": "chunked",
                  "coverage": {"chunks_total": 3, "chunks_read": 3, "contributing": [2]},
                  "timings": {"prefill_tokens": 2048, "prefill_s": 8.0, "tokens_per_s": 20.0}, "notes": []}),
    )
    page.route("**/api/sessions/*/questions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8"}, body=body.encode()))
    open_page(page)
    for box in page.locator("#documents input[type=checkbox]:checked").all():
        box.uncheck()
    doc_item(page, "codebase.zip").locator("input[type=checkbox]").check()
    page.evaluate("""() => {
        window.__labels = [];
        new MutationObserver(() => {
            const label = document.querySelector('#history .reading-label');
            if (label && window.__labels.at(-1) !== label.textContent) window.__labels.push(label.textContent);
        }).observe(document.getElementById('history'), {childList: true, subtree: true, characterData: true});
    }""")
    page.fill("#question", "What does main return?")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    labels = page.evaluate("window.__labels")
    assert "Reading chunk 1 of 3…" in labels, labels
    assert any("512 of 2,048 tokens" in x and "about 6 s left" in x for x in labels), labels
    msg = page.locator("#history .msg.assistant").last
    reasoning = msg.locator("details.reasoning")
    expect(reasoning).to_be_visible()
    assert reasoning.get_attribute("open") is None  # collapsed until asked for
    expect(reasoning.locator("summary")).to_have_text("Reasoning")
    expect(reasoning.locator(".thinking-text")).to_have_attribute("dir", "auto")
    reasoning.locator("summary").click()
    expect(reasoning.locator(".thinking-text")).to_have_text("The user wants the value that main() returns.")
    expect(msg.locator(".answer")).to_have_text("main() returns 52817.")
    expect(msg.locator(".meta")).to_contain_text("3 of 3 chunks read; evidence from chunk 2")
    chips = msg.locator(".chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).not_to_have_class(re.compile("unverified"))
    expect(chips.nth(1)).to_have_class(re.compile("unverified"))
    expect(chips.nth(1).locator(".badge")).to_have_text("unverified")

    chips.nth(0).click()  # a zip member's lines
    expect(page.locator("#viewer mark.quote")).to_have_text("return 52817")
    expect(page.locator("#viewer .section-where")).to_contain_text("src/app.py")
    chips.nth(1).click()  # the quote is not there: the cited line is marked and the warning shown
    expect(page.locator("#viewer-where .warning")).to_contain_text("Unverified")
    expect(page.locator("#viewer mark.lines")).to_have_text("def main():")
    expect(page.locator("#viewer-body .warning")).to_contain_text("do not occur")


def test_arabic_document_renders_right_to_left(page: Any, server: Server, shots: Path) -> None:
    open_page(page)
    # dropped onto the drop zone, as a person would drag it from the file manager
    page.evaluate("""([name, text]) => {
        const data = new DataTransfer();
        data.items.add(new File([text], name, {type: 'text/plain'}));
        const zone = document.getElementById('dropzone');
        for (const type of ['dragenter', 'dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
        }
    }""", [ARABIC_NAME, ARABIC.decode()])
    expect(page.locator("#upload-results > li.ok")).to_contain_text("stored")
    item = doc_item(page, ARABIC_NAME)
    expect(item).to_have_count(1)
    name = item.locator(".filename")
    assert name.get_attribute("dir") == "auto"
    assert name.evaluate("e => getComputedStyle(e).direction") == "rtl"
    item.get_by_role("button", name=f"View {ARABIC_NAME}").click()
    text = page.locator("#viewer .section-text").first
    expect(text).to_contain_text("مدة العقد سنة واحدة")
    assert text.get_attribute("dir") == "auto"
    assert text.evaluate("e => getComputedStyle(e).direction") == "rtl"
    # rtl text hugs the right edge of its box
    assert text.evaluate("""e => {  // the words of the first line (its number is drawn by CSS, not a node)
        const r = document.createRange(); r.selectNodeContents(e.querySelector('.line') || e);
        const t = r.getClientRects()[0], b = e.getBoundingClientRect();
        return (b.right - t.right) < (t.left - b.left);
    }""")
    expect(page.locator("#viewer-where .filename")).to_have_attribute("dir", "auto")
    page.screenshot(path=str(shots / "5-arabic.png"), full_page=False)


def test_usable_at_360_px(browser: Any, server: Server, shots: Path) -> None:
    context, page, problems = new_page(browser, server, width=360, height=780)
    try:
        open_page(page)

        def no_overflow(state: str) -> None:
            o = overflow_x(page)
            assert o["scrollWidth"] <= 360, f"{state}: {o}"

        no_overflow("start")
        expect(page.locator("#documents li.doc")).not_to_have_count(0)
        if "session_id" in shared:
            page.locator("#sessions button.session", has_text=PASSKEY_NAME).click()
            expect(page.locator("#history .msg.assistant .answer")).to_contain_text("52817")
            no_overflow("session open")
            chip = page.locator("#history .citations .chip").first
            chip.click()
            expect(page.locator("#viewer mark")).to_have_count(1)
            no_overflow("citation open")
            # the source is a full-screen sheet: the page under it takes no clicks until it is closed, and its
            # Close button is at hand (in view, at the top); closing returns to the chip
            expect(page.locator("#viewer-close")).to_be_in_viewport()
            assert page.locator(".layout > .work").evaluate("e => e.inert") is True
            page.click("#viewer-close")
            expect(page.locator("#viewer")).to_be_hidden()
            expect(chip).to_be_focused()
            assert page.locator(".layout > .work").evaluate("e => e.inert") is False
        shot(page, shots / "6-narrow-360.png")
        page.click("#tab-batch")
        expect(page.locator("#panel-batch")).to_be_visible()
        no_overflow("batch tab")
        for selector in ("#upload-button", "#ask-button", "#question", "#file"):
            box = page.locator(selector).bounding_box() if page.locator(selector).is_visible() else None
            if box:
                assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    finally:
        context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def test_keyboard_alone_reaches_upload_and_ask(page: Any) -> None:
    open_page(page)
    seen: list[str] = []
    for _ in range(120):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement && document.activeElement.id")
        seen.append(focused or "")
        if focused == "ask-button":
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("none", ""), "no visible focus on the Ask button"
            break
    assert "file" in seen and "upload-button" in seen and "ask-button" in seen, seen
    assert seen.index("file") < seen.index("upload-button") < seen.index("ask-button")
    # the question is asked with the keyboard too: the label belongs to the field, tabs switch with arrows
    assert page.locator("label[for=question]").count() == 1
    page.focus("#tab-ask")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-batch")).to_be_focused()
    expect(page.locator("#panel-batch")).to_be_visible()
    expect(page.locator("#panel-ask")).to_be_hidden()


def test_batch_tab_runs_questions_and_downloads_csv(page: Any, server: Server, shots: Path) -> None:
    if httpx.get(f"{server.url}/api/batches").status_code in (404, 405):
        pytest.skip("the batch API (/api/batches) is not served by this build")
    open_page(page)
    for box in page.locator("#documents input[type=checkbox]:checked").all():
        box.uncheck()
    doc_item(page, PASSKEY_NAME).locator("input[type=checkbox]").check()
    page.click("#tab-batch")
    page.set_input_files("#batch-file", files=[{"name": "questions.txt", "mimeType": "text/plain",
                                                "buffer": f"{QUESTION}\n\n".encode()}])
    expect(page.locator("#batch-questions")).to_have_value(re.compile(re.escape(QUESTION)))
    expect(page.locator("#batch-status")).to_contain_text("Loaded 1 question")
    page.click("#batch-run")
    expect(page.locator("#batch-status-box")).to_be_visible()
    expect(page.locator("#batch-label")).to_contain_text("Finished: 1 of 1 answered", timeout=ANSWER_WAIT_MS)
    expect(page.locator("#batch-progress")).to_have_attribute("value", "1")
    row = page.locator("#batch-results tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(QUESTION)
    expect(row).to_contain_text(PASSKEY_NAME)
    shot(page, shots / "7-batch.png")
    with page.expect_download() as download:
        page.click("#batch-csv")
    csv_text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert csv_text.splitlines()[0].startswith("filename,question_no,question,answer")
    assert QUESTION in csv_text


def test_password_ocr_and_word_citations_in_the_viewer(page: Any, server: Server, shots: Path) -> None:
    """An encrypted PDF asks for its password on the page; a scanned page and a Word clause are cited
    (scripted answer, as above) and the viewer shows the OCR note and the clause's heading path."""
    from tests import doc_builders
    from tests.builders import make_encrypted_pdf

    open_page(page)
    scan = doc_builders.scanned_pdf([doc_builders.scan_image(["The monthly fee is 4,200 euros."])])
    locked_pdf = make_encrypted_pdf(["Locked page text."], user_password="page-pw")
    files = [("locked.pdf", locked_pdf, "application/pdf"), ("scan.pdf", scan, "application/pdf"),
             ("msa.docx", doc_builders.contract_docx(), "application/octet-stream")]
    page.set_input_files("#file", files=[{"name": n, "mimeType": t, "buffer": b} for n, b, t in files])
    page.click("#upload-button")
    expect(page.locator("#upload-results > li")).to_have_count(3, timeout=60_000)  # OCR on a busy machine
    expect(page.locator("#upload-results > li.pending")).to_have_count(0, timeout=60_000)
    locked = page.locator("#upload-results > li.error")
    expect(locked).to_contain_text("encrypted PDF. Enter its password")  # the page's words, no curl
    expect(locked).not_to_contain_text("curl")
    label = locked.locator(".password-form label")
    expect(label).to_be_visible()
    expect(label).to_contain_text("Password for locked.pdf")
    locked.get_by_label("Password for locked.pdf").fill("page-pw")
    locked.locator(".password-form button").click()
    expect(page.locator("#upload-results > li.ok")).to_have_count(3, timeout=30_000)
    docs = api_documents(server)
    assert docs["locked.pdf"]["n_sections"] == 1
    expect(doc_item(page, "scan.pdf")).to_contain_text("read by OCR")
    expect(doc_item(page, "msa.docx")).to_contain_text("tracked changes")

    base = {"path": None, "line_start": None, "line_end": None, "verified": True, "origin": "model"}
    clause = {**base, "document_id": docs["msa.docx"]["id"], "filename": "msa.docx", "page": None,
              "quote": "The notice period is sixty days", "marker": "[msa.docx §4.2 ¶3]", "clause": "4.2",
              "para_start": 3, "para_end": 3}
    scanned = {**base, "document_id": docs["scan.pdf"]["id"], "filename": "scan.pdf", "page": 1,
               "quote": "The monthly fee is 4,200 euros", "marker": "[p. 1]"}
    body = _sse(("token", {"text": "Sixty days; 4,200 euros."}),
                ("done", {"answer": "Sixty days; 4,200 euros.", "thinking": "", "citations": [clause, scanned],
                          "mode": "whole", "timings": {}, "notes": []}))
    page.route("**/api/sessions/*/questions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8"}, body=body.encode()))
    checked = page.locator("#documents input[type=checkbox]:checked")
    while checked.count():
        checked.first.uncheck()
    for name in ("msa.docx", "scan.pdf"):
        doc_item(page, name).locator("input[type=checkbox]").check()
    page.fill("#question", "What are the notice period and the fee?")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    chips = page.locator("#history .msg.assistant").last.locator(".chip")
    expect(chips).to_have_count(2)
    expect(chips.nth(0)).to_contain_text("§4.2 ¶3")
    chips.nth(0).click()
    expect(page.locator("#viewer .section-where")).to_contain_text("4 Termination › 4.2 Notice")
    expect(page.locator("#viewer mark.quote")).to_have_text("The notice period is sixty days")
    chips.nth(1).click()
    expect(page.locator("#viewer .section-where")).to_contain_text("recognised by OCR")
    expect(page.locator("#viewer mark.quote")).to_have_text("The monthly fee is 4,200 euros")
    shot(page, shots / "8-ocr-citation.png")
