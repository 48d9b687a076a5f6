"""The page as a reviewer's workbench (issue 14), in Debian's Chromium against a real `docqa serve` with the
real embedded model: grounding per sentence and its passage one click away, Markdown rendered inert,
honest status (queue, reading, writing, stalled, done), continue, deep links, past batches after a
restart, the viewer (line numbers, code without wrapping, a zip as a tree, PDF pages with hyphenation
joined, headings), the model note, the plan's reading estimate and snapshot, 360 px, keyboard only, Arabic.

DOCQA_UPDATE_SCREENSHOT=1 writes the main states to docs/ for the README. Tests share one server and
run in file order; each keeps its documents tiny.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, REPO, Server, new_page, overflow_x
from tests.builders import make_pdf, make_zip

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

LEASE_NAME = "lease.txt"
LEASE = b"The monthly rent is EUR 4,500.\nThis Agreement is governed by the laws of England and Wales.\n"
QUESTION = "What is the monthly rent?"
ARABIC_NAME = "ايجار.txt"
ARABIC = "الإيجار الشهري هو ٤٥٠٠ يورو.\nمدة العقد سنة واحدة.\n".encode()
ARABIC_QUESTION = "ما هو الإيجار الشهري؟"
ANSWER_WAIT_MS = 300_000  # the tiny model on a 2-core machine shared by 8 agents (0.5 tokens/s seen under load 16-24)
DOCS = REPO / "docs"
shared: dict[str, Any] = {"lease": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("workbench") / "data",
                 env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "48"})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    if "lease" in shared:
        api_documents(server)  # the lease the later tests share, also when one runs on its own
    yield pg
    context.close()
    unexpected = [p for p in problems if "Failed to load resource" not in p]
    assert not unexpected, unexpected


def open_page(page: Any, path: str = "/") -> None:
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def upload(page: Any, *files: tuple[str, bytes, str]) -> None:
    page.set_input_files("#file", files=[{"name": n, "mimeType": t, "buffer": b} for n, b, t in files])
    page.click("#upload-button")
    expect(page.locator("#upload-results > li")).to_have_count(len(files))
    expect(page.locator("#upload-results > li.pending")).to_have_count(0)


def doc_item(page: Any, filename: str) -> Any:
    return page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=filename))


def choose_only(page: Any, *names: str) -> None:
    checked = page.locator("#documents input[type=checkbox]:checked")
    while checked.count():
        checked.first.uncheck()
    for name in names:
        doc_item(page, name).locator("input[type=checkbox]").check()


def save_shot(page: Any, name: str, full_page: bool = False) -> None:
    if os.environ.get("DOCQA_UPDATE_SCREENSHOT"):
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name), full_page=full_page)


def api_documents(server: Server) -> dict[str, dict[str, Any]]:
    docs = {d["filename"]: d for d in httpx.get(f"{server.url}/api/documents").json()}
    if LEASE_NAME not in docs:  # a test run on its own (-k): the lease the others share
        httpx.post(f"{server.url}/api/documents", files={"file": (LEASE_NAME, LEASE, "text/plain")})
        docs = {d["filename"]: d for d in httpx.get(f"{server.url}/api/documents").json()}
    return docs


def _sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {kind}\r\ndata: {json.dumps(data, ensure_ascii=False)}\r\n\r\n" for kind, data in events)


def scripted(page: Any, body: str) -> None:
    page.route("**/api/sessions/*/questions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8"}, body=body.encode()))


def watch_stages(page: Any) -> None:
    page.evaluate("""() => {
        window.__stages = [];
        new MutationObserver(() => {
            const li = document.querySelector('#history .msg.assistant:last-child');
            const s = li && li.dataset.stage;
            if (s && window.__stages.at(-1) !== s) window.__stages.push(s);
        }).observe(document.getElementById('history'), {subtree: true, attributes: true, childList: true});
    }""")


# ---- the model, the plan, the grounded answer --------------------------------------------------------


def test_model_picker_says_size_quantization_and_demo(page: Any, server: Server) -> None:
    open_page(page)
    model = httpx.get(f"{server.url}/api/models").json()[0]
    assert model["embedded"] is True and model["quantization"] == "Q4_1", model
    assert 100e6 < model["parameters"] < 200e6, model  # SmolLM2-135M, counted from the tensor index
    option = page.locator("#model option").first
    expect(option).to_have_text("default · 135M · Q4_1")  # short: the side column shows it whole
    about = page.locator("#model-about")  # the rest, on a line that wraps
    for words in ("135M parameters", "Q4_1", "llama", "8,192 ctx (trained)"):
        expect(about).to_contain_text(words)
    note = page.locator("#model-note")
    expect(note).to_contain_text("Demo model")
    note.get_by_role("button", name=re.compile("bring a GGUF")).click()
    expect(page.locator("#viewer")).to_be_visible()
    expect(page.locator("#viewer-where")).to_contain_text("Bring your own model")
    expect(page.locator("#viewer-body")).to_contain_text("DOCQA_MODEL=")


def test_upload_plan_ask_grounding_and_passage_in_two_clicks(page: Any, server: Server) -> None:
    open_page(page)
    upload(page, (LEASE_NAME, LEASE, "text/plain"))
    item = doc_item(page, LEASE_NAME)
    plan = page.locator("#plan")
    expect(page.locator("#plan-reading")).to_contain_text("not known yet")  # nothing measured on this server yet
    expect(item.locator(".meta")).to_contain_text(re.compile(r"[\d,]+ tokens \(exact, with instructions\)"))
    expect(plan).to_contain_text("Tokens to read")
    watch_stages(page)
    page.fill("#question", QUESTION)
    page.click("#ask-button")
    expect(page.locator("#stop-button")).to_be_visible()
    if os.environ.get("DOCQA_UPDATE_SCREENSHOT"):  # the reading and writing status, with its rates (as the queue
        # test draws it too, after a wait for another client that a busy machine can stretch past its limit)
        phase = page.locator("#history .msg.assistant .status-line").last.locator(".phase")
        expect(phase).to_have_text(re.compile("Read|Writing"), timeout=ANSWER_WAIT_MS)
        save_shot(page, "page-reading.png")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    stages = page.evaluate("window.__stages")
    assert "reading" in stages and "writing" in stages, stages
    msg = page.locator("#history .msg.assistant").last
    # (a busy machine writes slowly: "total 2 min" is as good as "total 6.4 s")
    expect(msg.locator(".meta")).to_contain_text(
        re.compile(r"first word after [\d.]+ (s|min) · total [\d.]+ (s|min)"))

    sid = httpx.get(f"{server.url}/api/sessions").json()[0]["id"]
    shared["session_id"] = sid
    stored = httpx.get(f"{server.url}/api/sessions/{sid}").json()
    assert stored["title"] == QUESTION  # titled by its first question
    assert page.url.endswith(f"?session={sid}")
    claims = stored["messages"][-1]["claims"]
    assert claims, stored["messages"][-1]
    rows = msg.locator(".claims > li.claim")
    expect(rows).to_have_count(0 if stored["messages"][-1]["draft"] else len(claims))
    for row, claim in zip(rows.all(), claims if rows.count() else [], strict=True):
        # the status is a word, not a colour
        words = {"quoted": "Quoted", "supported": "Supported", "unsupported": "Unsupported",
                 "restates_question": "Restates the question", "not_in_documents": "Not in the documents"}
        expect(row.locator(".claim-status")).to_contain_text(words[claim["status"]])
    grounded = [(i, c) for i, c in enumerate(claims) if c["passage"]]
    draft = stored["messages"][-1]["draft"]
    if draft is not None:  # withheld as unsupported: the page says so, the draft is one click away
        expect(msg.locator(".answer")).to_contain_text("The documents do not seem to say")
        msg.locator("details.withheld summary").click()
        expect(msg.locator("details.withheld .draft-text")).to_contain_text(draft.split()[0])
        expect(rows).to_have_count(0)
    if any(c["status"] == "unsupported" for c in claims):
        expect(msg.locator(".grounding")).to_have_class(re.compile("has-unsupported"))
        if draft is None:  # the sentences are marked in the answer itself
            expect(msg.locator(".answer .claim-inline.unsupported").first).to_be_visible()
    # the tiny model often answers beside the question; then the nearest passage of an unsupported sentence
    # is what opens (labelled as not support), the same two clicks
    opened = grounded or [(i, c) for i, c in enumerate(claims) if c.get("nearest")]
    assert opened, f"no claim of the answer found a passage or a nearest one: {claims}"
    i, claim = opened[0]
    passage = claim["passage"] or claim["nearest"]
    # click 1: the sentence's marker in the answer (or its chip below) opens the passage, highlighted
    markers = msg.locator(".answer .claim-mark, .draft-text .claim-mark")
    marker = markers.nth(i) if markers.count() > i else rows.nth(i).locator(".chip")
    marker.click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    mark = viewer.locator("mark.quote").first
    expect(mark).to_be_visible()
    expect(mark).to_be_in_viewport()
    assert passage["text"].split()[0] in viewer.locator("mark.quote").all_inner_texts()[0]
    expect(viewer.locator(".line.hit")).not_to_have_count(0)
    answer_box, viewer_box = msg.bounding_box(), viewer.bounding_box()
    assert viewer_box["x"] > answer_box["x"] + answer_box["width"] - 1  # beside the answer
    page.set_viewport_size({"width": 1366, "height": 1000})
    page.evaluate("window.scrollTo(0, 0)")
    save_shot(page, "screenshot.png")

    # The first reading was measured: the plan now says how long reading takes, or that a snapshot exists.
    deadline = time.monotonic() + 60
    lease_id = api_documents(server)[LEASE_NAME]["id"]
    while True:
        p = httpx.post(f"{server.url}/api/plan", json={"document_ids": [lease_id]}).json()
        if p["snapshot"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert p["reading"]["samples"] >= 1 and p["reading"]["rate_tokens_per_s"] > 0, p["reading"]
    assert p["snapshot"], "the runner wrote no snapshot of the reading within a minute"
    page.click("#new-session")
    choose_only(page, LEASE_NAME)
    expect(page.locator("#plan-reading")).to_contain_text("snapshot of this reading is on disk")


def test_deep_link_survives_reload(page: Any, server: Server) -> None:
    if "session_id" not in shared:
        pytest.skip("needs the session of the grounding test")
    sid = shared["session_id"]
    open_page(page, f"/?session={sid}")
    expect(page.locator("#history .msg.user .question-text")).to_have_text(QUESTION)
    expect(page.locator(f"#sessions button.session[data-id='{sid}']")).to_have_attribute("aria-current", "true")
    expect(page.locator("#session-label")).to_contain_text(QUESTION)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#history .msg.user .question-text")).to_have_text(QUESTION)
    # its sentences, or (withheld as unsupported) its collapsed draft
    expect(page.locator("#history .claims > li, #history details.withheld").first).to_be_visible()
    page.click("#new-session")
    assert "session=" not in page.url
    open_page(page, "/?session=" + "0" * 32)  # a session that does not exist says so and leaves the URL
    expect(page.locator("#ask-status")).to_contain_text("could not be opened")
    assert "session=" not in page.url


def test_status_through_queue_reading_writing_and_done(page: Any, server: Server) -> None:
    """Another client's long answer holds the model: the page's question waits in the queue (its position
    shown), then reads, writes and is done."""
    # the other client reads a ~3,000-token document: that holds the model for a while (~12 s on an idle machine)
    long_doc = "".join(f"Clause {i}. The tenant shall keep room {i} clean and return its key {i} on time.\n"
                       for i in range(160)).encode()  # ~3,000 tokens: still reading when the page asks
    stored = httpx.post(f"{server.url}/api/documents", files={"file": ("rules.txt", long_doc, "text/plain")}).json()
    other = httpx.post(f"{server.url}/api/sessions", json={"document_ids": [stored["id"]]}).json()["id"]
    held = threading.Event()

    def long_answer() -> None:
        with httpx.stream("POST", f"{server.url}/api/sessions/{other}/questions", timeout=300,
                          headers={"accept": "text/event-stream"},
                          json={"question": "Which room is clause 70 about?", "history": False}) as r:
            for line in r.iter_lines():
                if line.startswith("event: progress"):
                    held.set()

    worker = threading.Thread(target=long_answer, daemon=True)
    api_documents(server)
    worker.start()
    assert held.wait(120), "the other client's reading did not start"
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.select_option("#mode", "chunked")  # a different reading, so it is not answered from the snapshot
    expect(page.locator("#plan-text")).to_contain_text("Chunked")
    watch_stages(page)
    page.fill("#question", "Who are the parties?")
    page.click("#ask-button")
    status = page.locator("#history .msg.assistant .status-line").last
    expect(status).to_contain_text("1 question ahead of this one", timeout=30_000)
    expect(status.locator(".phase")).to_have_text("Waiting in the queue")
    save_shot(page, "page-queue.png")
    expect(status.locator(".phase")).to_have_text(re.compile("Reading|Read|Writing"), timeout=ANSWER_WAIT_MS)
    save_shot(page, "page-reading.png")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    worker.join(300)
    stages = page.evaluate("window.__stages")
    assert stages.index("queue") < stages.index("reading") < stages.index("writing"), stages
    expect(status).to_be_hidden()
    expect(page.locator("#history .msg.assistant .meta").last).to_contain_text("first word after")


def test_a_stall_shows_as_such_and_cancel_stops_it(page: Any, server: Server) -> None:
    """The server answers nothing for more than 10 s (a held request): the status says Stalled."""
    held: list[Any] = []
    page.route("**/api/sessions/*/questions", lambda route: held.append(route))
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.fill("#question", QUESTION)
    page.click("#ask-button")
    status = page.locator("#history .msg.assistant .status-line").last
    expect(status.locator(".phase")).to_have_text("Stalled", timeout=20_000)
    expect(status).to_have_class(re.compile("stalled"))
    expect(status).to_contain_text("Nothing from the model for 1")
    page.click("#stop-button")
    expect(page.locator("#history .msg.assistant.failed .error")).to_contain_text("Stopped")
    expect(page.locator("#ask-button")).to_be_enabled()


def test_continue_an_answer_cut_at_its_limit(page: Any, server: Server) -> None:
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.select_option("#answer-length", index=2)  # short
    page.fill("#question", "Describe this agreement in great detail, clause by clause, in a long essay.")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    sid = page.url.split("session=")[1]
    first = httpx.get(f"{server.url}/api/sessions/{sid}").json()["messages"][-1]
    if first["stop_reason"] != "length":
        pytest.skip(f"the model ended its answer before the limit: {first['content']!r}")
    more = page.locator("#history .msg.assistant").last.get_by_role("button", name="Continue the answer")
    if first["draft"] is not None:  # withheld as unsupported: nothing to continue is offered (issue 28)
        expect(page.locator("#history .msg.assistant").last.locator("details.withheld")).to_be_visible()
        expect(more).to_have_count(0)
        return
    more.click()
    expect(page.locator("#history .msg.user.continues")).to_have_count(1)
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    messages = httpx.get(f"{server.url}/api/sessions/{sid}").json()["messages"]
    assert len(messages) == 4 and messages[2]["continues"] is True, messages
    assert messages[3]["content"].strip()
    # a true continuation: the cut answer went back into its own assistant turn, not in as an earlier turn
    assert messages[3]["history"]["turns"] == 0, messages[3]
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#history .msg.user.continues .question-text")).to_have_text("Continue the answer.")


# ---- Markdown, the viewer ---------------------------------------------------------------------------


HOSTILE = """**bold** and `code` and [a link](https://example.org/x "t").

<script>window.__pwned = 1</script>

<img src=x onerror="window.__pwned = 2">

<iframe src="javascript:window.__pwned = 3"></iframe>

<svg onload="window.__pwned = 4"><circle r="4"/></svg>

[click me](javascript:window.__pwned=5) [data](data:text/html,x) [vb](vbscript:x) <javascript:alert(1)>

Inline <b onclick="window.__pwned = 6">bold tag</b> and <a href="javascript:window.__pwned=7">raw link</a>.

![tracker](http://127.0.0.1:1/pixel.png)

<style>body{display:none}</style>

<form action="/x"><input name=q></form>

```python
def main():
    return 52817
```

| a | b |
|---|---|
| 1 | 2 |
"""


def test_hostile_markdown_is_inert(page: Any, server: Server) -> None:
    scripted(page, _sse(("token", {"text": HOSTILE}),
                        ("done", {"answer": HOSTILE, "thinking": "", "citations": [], "mode": "whole",
                                  "timings": {}, "notes": [], "claims": [], "grounding": {}})))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.fill("#question", "Show me some Markdown.")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    answer = page.locator("#history .msg.assistant .answer").last
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("p code").first).to_have_text("code")
    expect(answer.locator("pre code")).to_contain_text("    return 52817")  # indentation kept
    expect(answer.locator("table td").first).to_have_text("1")
    link = answer.locator("a", has_text="a link")
    expect(link).to_have_attribute("href", "https://example.org/x")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    for selector in ("script", "img", "iframe", "svg", "style", "form", "input[name=q]", "[onerror]", "[onload]"):
        assert answer.locator(selector).count() == 0, selector
    hrefs = answer.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(h is None or h.startswith("https://") for h in hrefs), hrefs
    # raw HTML shows as the text it is; nothing ran, nothing was fetched
    expect(answer).to_contain_text("<script>window.__pwned = 1</script>")
    expect(answer).to_contain_text("tracker")
    expect(answer).to_contain_text('<b onclick="window.__pwned = 6">bold tag</b>')
    assert page.evaluate("window.__pwned") is None
    assert not [u for u in requests if "pixel.png" in u or u.startswith("javascript:")], requests
    expect(page.locator("body")).to_be_visible()
    expect(answer).to_contain_text("click me")  # a javascript: link is left as its text, or an <a> without href
    links = answer.locator("a", has_text="click me")
    if links.count():
        assert links.first.get_attribute("href") is None
        links.first.click()
    assert page.evaluate("window.__pwned") is None


def test_viewer_code_lines_zip_tree_pdf_pages_and_headings(page: Any, server: Server) -> None:
    long_line = "    x = " + " + ".join(f"value_{i}" for i in range(40))
    code = f"def main():\n    if True:\n        return 52817\n{long_line}\n".encode()
    codebase = make_zip({"src/app.py": code, "src/util/helpers.py": b"def helper():\n    return 1\n",
                         "README.md": b"# Project\n\nSome words.\n"})
    pdf = make_pdf(["Lorem ipsum dolor sit amet, consectetur adip-\niscing elit, sed do eiusmod.",
                    "The second page says the fee is 4,200 euros."])
    notes = b"# Terms\n\nThe term is one year.\n\n## Payment\n\nRent is due monthly.\n\n## Notice\n\nSixty days.\n"
    from tests.doc_builders import contract_docx

    open_page(page)
    upload(page, ("codebase.zip", codebase, "application/zip"), ("contract.pdf", pdf, "application/pdf"),
           ("notes.md", notes, "text/markdown"), ("msa.docx", contract_docx(), "application/octet-stream"))

    doc_item(page, "codebase.zip").get_by_role("button", name="View codebase.zip").click()
    viewer = page.locator("#viewer")
    expect(page.locator("#viewer-where")).to_contain_text("3 files")
    tree = viewer.locator("nav .tree")
    expect(tree.locator("summary", has_text="src/")).to_have_count(1)
    expect(tree.locator("summary", has_text="util/")).to_have_count(1)
    tree.get_by_role("button", name="app.py").click()
    text = viewer.locator(".section-text.code").first
    lines = text.locator(".line")
    expect(lines).to_have_count(4)
    expect(lines.nth(2)).to_have_attribute("data-n", "3")
    assert lines.nth(2).inner_text() == "        return 52817"  # indentation intact
    assert text.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    assert text.evaluate("e => e.scrollWidth > e.clientWidth"), "a long code line wraps instead of scrolling"
    # (docs/page-code.png: a code citation, taken by test_page_review.py)

    doc_item(page, "contract.pdf").get_by_role("button", name="View contract.pdf").click()
    pages = viewer.locator(".section-where")
    expect(pages).to_have_count(2)
    expect(pages.nth(0)).to_have_text("Page 1")
    expect(pages.nth(1)).to_have_text("Page 2")
    expect(viewer.locator(".section-text").first).to_contain_text("adipiscing")
    assert "adip-" not in viewer.locator(".section-text").first.inner_text()

    doc_item(page, "notes.md").get_by_role("button", name="View notes.md").click()
    toc = viewer.locator("nav.toc")
    expect(toc.get_by_role("button")).to_have_text(["Terms", "Payment", "Notice"])
    toc.get_by_role("button", name="Notice").click()
    expect(viewer.locator(".line.md-h2", has_text="Notice")).to_be_in_viewport()

    doc_item(page, "msa.docx").get_by_role("button", name="View msa.docx").click()  # Word: by heading
    expect(viewer.locator("nav.toc").get_by_role("button", name="4 Termination › 4.2 Notice")).to_have_count(1)
    expect(viewer.locator(".section-text .line").first).to_have_attribute("data-n", re.compile(r"^¶\d+$"))


# ---- batches --------------------------------------------------------------------------------------


def test_batch_list_after_a_restart_with_sources_grounding_and_eta(page: Any, server: Server) -> None:
    doc_id = api_documents(server)[LEASE_NAME]["id"]
    created = httpx.post(f"{server.url}/api/batches",
                         json={"document_ids": [doc_id], "questions": [QUESTION], "per_document": True}).json()
    deadline = time.monotonic() + ANSWER_WAIT_MS / 1000
    while httpx.get(f"{server.url}/api/batches/{created['id']}").json()["status"] != "done":
        assert time.monotonic() < deadline, "the batch did not finish"
        time.sleep(1)
    server.stop()
    server.start()
    open_page(page)
    page.click("#tab-batch")
    item = page.locator("#batch-list li.batch-item").first
    expect(item).to_contain_text("Finished · 1 of 1 answered")
    expect(item).to_contain_text(LEASE_NAME)
    item.get_by_role("button", name="Open").click()
    row = page.locator("#batch-results tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.grounding-cell")).to_contain_text(re.compile("grounded|Withheld"))
    result = httpx.get(f"{server.url}/api/batches/{created['id']}").json()["results"][0]
    if any(c["passage"] for c in result["claims"]) or result["citations"]:
        row.locator("td.sources-cell .chip").first.click()
        expect(page.locator("#viewer mark").first).to_be_visible()
    cell = row.locator("td.filename-cell")
    assert cell.evaluate("e => getComputedStyle(e).wordBreak") == "normal"
    assert cell.evaluate("e => getComputedStyle(e).overflowWrap") != "anywhere"  # no "contr act.tx t"
    with page.expect_download() as download:
        item.get_by_role("button", name=re.compile("Download the CSV")).click()
    assert QUESTION in Path(download.value.path()).read_text(encoding="utf-8-sig")
    if page.locator("#viewer-close").is_visible():  # a source was opened above
        page.click("#viewer-close")
    page.locator("#panel-batch").scroll_into_view_if_needed()
    save_shot(page, "page-batch.png")


def test_batch_progress_shows_time_left(page: Any, server: Server) -> None:
    """A running batch (scripted): the time left comes from the items answered so far."""
    item = {"status": "done", "question": "q1", "answer": "A.", "timings": {"item_s": 20.0}, "claims": [],
            "grounding": {}, "citations": [], "filename": LEASE_NAME, "document_id": None}
    running = {"id": "b" * 32, "status": "running", "done": 1, "failed": 0, "cancelled": 0, "running": 1,
               "queued": 2, "total": 4, "document_ids": [], "n_questions": 4, "created_at": "2026-12-01T10:00:00",
               "results": [item, {**item, "status": "running", "answer": None}]}
    page.route("**/api/batches", lambda route: route.fulfill(json=[running]))
    page.route(f"**/api/batches/{'b' * 32}", lambda route: route.fulfill(json=running))
    open_page(page)
    page.click("#tab-batch")
    page.locator("#batch-list").get_by_role("button", name="Open").click()
    expect(page.locator("#batch-label")).to_have_text("Running: 1 of 4 answered · about 60 s left")


# ---- phone, keyboard, Arabic --------------------------------------------------------------------------


def test_phone_360_px_session_brings_the_conversation_into_view(browser: Any, server: Server) -> None:
    if "session_id" not in shared:
        pytest.skip("needs the session of the grounding test")
    context, page, problems = new_page(browser, server, width=360, height=740)
    try:
        open_page(page)
        assert overflow_x(page)["scrollWidth"] <= 360
        button = page.locator(f"#sessions button.session[data-id='{shared['session_id']}']")
        button.scroll_into_view_if_needed()
        button.click()
        expect(page.locator("#history .msg.assistant .answer")).to_be_visible()
        expect(page.locator("#panel-ask")).to_be_in_viewport()
        assert overflow_x(page)["scrollWidth"] <= 360
        # a sentence's source: its chip, or (an answer withheld as unsupported) its marker in the draft
        withheld = page.locator("#history details.withheld summary")
        if withheld.count():
            withheld.first.click()
        # (a sentence with no passage at all has a disabled marker: nothing to open, so never the one clicked)
        chip = page.locator("#history .claims .chip, #history .draft-text .claim-mark:enabled").first
        chip.click()
        expect(page.locator("#viewer mark").first).to_be_in_viewport()
        assert overflow_x(page)["scrollWidth"] <= 360
        expect(page.locator("#viewer-close")).to_be_in_viewport()  # the sheet's Close is at hand
        page.click("#viewer-close")
        expect(page.locator("#viewer")).to_be_hidden()
        expect(chip).to_be_focused()
        # (docs/page-360.png: the viewer as a sheet on a phone, taken by test_page_review.py)
    finally:
        context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def test_keyboard_only_asks_and_checks_a_sentence(page: Any, server: Server) -> None:
    doc = api_documents(server)[LEASE_NAME]
    passage = {"text": "The monthly rent is EUR 4,500.", "document_id": doc["id"], "filename": LEASE_NAME,
               "page": None, "path": LEASE_NAME, "line_start": 1, "line_end": 1, "chunk": None}
    nearest = {**passage, "line_start": 2, "line_end": 2,
               "text": "This Agreement is governed by the laws of England and Wales."}
    claims = [{"text": "The rent is EUR 4,500.", "status": "supported", "score": 90.0, "missing": [],
               "nearest": None, "passage": passage},
              {"text": "It is governed by EU law.", "status": "unsupported", "score": 50.0,
               "missing": ["eu"], "passage": None, "nearest": nearest}]
    answer = "The rent is EUR 4,500. It is governed by EU law."
    scripted(page, _sse(("token", {"text": answer}),
                        ("done", {"answer": answer, "thinking": "", "citations": [], "mode": "whole", "timings": {},
                                  "notes": [], "claims": claims,
                                  "grounding": {"supported": 1, "unsupported": 1, "grounded": 1, "checked": 2}})))
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.focus("#question")
    page.keyboard.type("What is the rent?")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    msg = page.locator("#history .msg.assistant").last
    expect(msg.locator(".grounding summary")).to_contain_text(
        "1 of 2 sentences grounded in the documents · 1 unsupported")
    expect(msg.locator(".claim-mark.unsupported")).to_have_attribute("aria-label",
                                                                     re.compile("Sentence 2: unsupported"))
    expect(msg.locator(".claim-inline.unsupported")).to_have_text("It is governed by EU law.")
    # Shift+Tab from the question back to the first sentence's marker, Enter opens its passage, Escape returns
    page.focus("#question")
    for _ in range(40):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.textContent === '✓1'"):
            break
    expect(msg.locator(".claim-mark").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer mark.quote")).to_have_text("The monthly rent is EUR 4,500.")
    expect(page.locator("#viewer-h")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()
    expect(msg.locator(".claim-mark").first).to_be_focused()
    # the unsupported sentence opens its nearest passage, labelled as not support
    page.keyboard.press("Tab")
    expect(msg.locator(".claim-mark.unsupported")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-where .warning")).to_contain_text("does not support")
    expect(page.locator("#viewer mark.quote")).to_contain_text("England and Wales")


def test_arabic_document_and_arabic_question(page: Any, server: Server) -> None:
    open_page(page)
    upload(page, (ARABIC_NAME, ARABIC, "text/plain"))
    choose_only(page, ARABIC_NAME)
    page.fill("#question", ARABIC_QUESTION)
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.", timeout=ANSWER_WAIT_MS)
    question = page.locator("#history .msg.user .question-text").last
    expect(question).to_have_text(ARABIC_QUESTION)
    assert question.evaluate("e => getComputedStyle(e).direction") == "rtl"
    msg = page.locator("#history .msg.assistant").last
    assert msg.locator(".answer").get_attribute("dir") == "auto"
    for claim in msg.locator(".claim-text").all():
        assert claim.get_attribute("dir") == "auto"
    doc_item(page, ARABIC_NAME).get_by_role("button", name=f"View {ARABIC_NAME}").click()
    text = page.locator("#viewer .section-text").first
    expect(text).to_contain_text("مدة العقد سنة واحدة")
    assert text.evaluate("e => getComputedStyle(e).direction") == "rtl"
    save_shot(page, "page-arabic.png")
