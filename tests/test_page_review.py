"""What a reviewer met in 70 minutes on the page (issue 28), in Debian's Chromium against a real `docqa serve`:
code citations that keep their file and line, the nearest passage of an unsupported sentence told apart
from support, a stall judged against the measured rate, withheld answers without noise, batches told
apart (first question, exact counts after a reload, an ETA without the first reading), the phone (the
question first, the viewer as a sheet with Close at hand), and the smaller things (the plan above the
fold, focus on the answer, a cancelled question kept, the previous session's source closed, the zip tree,
the password prompt).

Answers are scripted (the server's SSE shape, sent by the browser's request interception): what is judged
here is the page, not the model. Sessions, documents, sections and batches are the real server's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, REPO, Server, new_page, overflow_x
from tests.builders import make_zip

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

ZIP_NAME = "click-subset.zip"
# globals.py: 36 lines, a blank line 37 (the cut between its two sections falls on it), then more; line 22
# is long enough that its highlight lies far to the right of the code box
LONG = "    return _local.stack[-1] if _local.stack else None  # " + "the context that is active now, " * 8
GLOBALS = "\n".join(
    [f"def helper_{i}(ctx, value):  # line {i + 1}" for i in range(21)]
    + [LONG]
    + [f"CONSTANT_{i} = {i}  # padding to make the first section long" for i in range(14)]
    + [""]
    + [f"def after_{i}():  # line {38 + i}" for i in range(20)]
) + "\n"
CORE = b"def main():\n    return 1\n"
LEASE_NAME = "lease.txt"
LEASE = b"The monthly rent is EUR 4,500.\nThis Agreement is governed by the laws of England and Wales.\n"


def save_shot(page: Any, name: str) -> None:
    """DOCQA_UPDATE_SCREENSHOT=1 writes the state to docs/ for the README."""
    if os.environ.get("DOCQA_UPDATE_SCREENSHOT"):
        page.screenshot(path=str(REPO / "docs" / name))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("review") / "data", env={"DOCQA_SEED": "1", "DOCQA_ANSWER_TOKENS": "48"})
    srv.start()
    for name, body, kind in ((ZIP_NAME, make_zip({"click-subset/globals.py": GLOBALS.encode(),
                                                  "click-subset/core.py": CORE}), "application/zip"),
                             (LEASE_NAME, LEASE, "text/plain")):
        r = httpx.post(f"{srv.url}/api/documents", files={"file": (name, body, kind)}, timeout=120)
        assert r.status_code == 201, r.text
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    yield pg
    context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def open_page(page: Any, path: str = "/") -> None:
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def documents(server: Server) -> dict[str, dict[str, Any]]:
    return {d["filename"]: d for d in httpx.get(f"{server.url}/api/documents").json()}


def doc_item(page: Any, filename: str) -> Any:
    return page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=filename))


def choose_only(page: Any, *names: str) -> None:
    checked = page.locator("#documents input[type=checkbox]:checked")
    while checked.count():
        checked.first.uncheck()
    for name in names:
        doc_item(page, name).locator("input[type=checkbox]").check()


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return "".join(f"event: {k}\r\ndata: {json.dumps(d, ensure_ascii=False)}\r\n\r\n" for k, d in events).encode()


def scripted(page: Any, answer: dict[str, Any]) -> None:
    body = sse(("token", {"text": answer["answer"]}), ("done", answer))
    page.route("**/api/sessions/*/questions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8"}, body=body))


def done(answer: str, **extra: Any) -> dict[str, Any]:
    return {"answer": answer, "thinking": "", "citations": [], "mode": "whole", "timings": {}, "notes": [],
            "claims": [], "grounding": {}, "draft": None, **extra}


def code_claims(server: Server) -> tuple[str, list[dict[str, Any]]]:
    zid = documents(server)[ZIP_NAME]["id"]
    passage = {"document_id": zid, "filename": ZIP_NAME, "page": None, "path": "globals.py", "line_start": 22,
               "line_end": 22, "chunk": None, "text": "the context that is active now"}
    nearest = {**passage, "line_start": 40, "line_end": 40, "text": "def after_2():"}
    answer = "helper returns the active context. It is thread safe."
    return answer, [
        {"text": "helper returns the active context.", "status": "supported", "score": 90.0, "missing": [],
         "passage": passage, "nearest": None},
        {"text": "It is thread safe.", "status": "unsupported", "score": 40.0, "missing": ["thread", "safe"],
         "passage": None, "nearest": nearest},
    ]


def ask_scripted(page: Any, answer: dict[str, Any], question: str = "What does helper return?") -> Any:
    scripted(page, answer)
    page.fill("#question", question)
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    return page.locator("#history .msg.assistant").last


# ---- 1. code citations keep their file and line ---------------------------------------------------------


def test_a_code_citation_names_its_file_and_keeps_each_line_number_beside_its_line(page: Any, server: Server) -> None:
    open_page(page)
    choose_only(page, ZIP_NAME)
    answer, claims = code_claims(server)
    msg = ask_scripted(page, done(answer, claims=claims, grounding={"grounded": 1, "checked": 2, "unsupported": 1}))
    expect(msg.locator(".claims .chip").first).to_contain_text("L22")  # a passage shows its range
    msg.locator(".answer .claim-mark").first.click()
    where = page.locator("#viewer-where")
    expect(where).to_contain_text(f"{ZIP_NAME} › globals.py — line 22")
    viewer = page.locator("#viewer")
    mark = viewer.locator("mark.quote").first
    expect(mark).to_be_in_viewport()
    code = viewer.locator(".section-text.code").first
    line = code.locator(".line[data-n='22']")
    expect(line.locator("mark")).to_have_count(1)
    save_shot(page, "page-code.png")
    # the box scrolled sideways to the highlight, and the number 22 is still at the box's left edge
    assert code.evaluate("e => e.scrollLeft") > 100, "the code box did not scroll to the highlight"
    for left in (0, 400, 10_000):
        code.evaluate("(e, x) => { e.scrollLeft = x; }", left)
        box = code.bounding_box()
        for n in ("22", "1", "36"):  # the long line and short ones: each number stays at the left edge
            gutter = code.locator(f".line[data-n='{n}'] .ln").bounding_box()
            assert abs(gutter["x"] - box["x"]) < 2, (n, left, gutter, box)
        assert line.locator(".ln").evaluate("e => getComputedStyle(e, '::before').content") == '"22"'
    # what is copied is the code without its numbers
    assert line.inner_text().startswith("    return _local.stack")
    # the file's heading stays in view while its lines scroll under it
    heading = viewer.locator(".section-where").first
    expect(heading).to_contain_text("globals.py")
    page.locator("#viewer-scroll").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    head, scroller = heading.bounding_box(), page.locator("#viewer-scroll").bounding_box()
    assert scroller["y"] - 1 <= head["y"] <= scroller["y"] + 4, (head, scroller)
    expect(page.locator("#viewer-close")).to_be_in_viewport()


def test_the_zip_tree_keeps_its_top_folder_links_its_files_and_the_blank_line_between_sections(
        page: Any, server: Server) -> None:
    open_page(page)
    doc_item(page, ZIP_NAME).get_by_role("button", name=f"View {ZIP_NAME}").click()
    tree = page.locator("#viewer nav .tree.top")
    expect(tree.locator("summary").first).to_have_text(ZIP_NAME)  # the archive is the top of the tree
    file = tree.get_by_role("button", name="globals.py")
    assert file.evaluate("e => getComputedStyle(e).textDecorationLine") == "underline"  # looks clickable
    assert file.evaluate("e => getComputedStyle(e).cursor") == "pointer"
    file.click()
    sections = httpx.get(f"{server.url}/api/documents/{documents(server)[ZIP_NAME]['id']}/sections").json()["items"]
    ranges = [(s["line_start"], s["line_end"]) for s in sections if s["path"] == "globals.py"]
    assert (1, 36) in ranges and any(start == 38 for start, _ in ranges), ranges  # line 37 fell between them
    shown = page.locator("#viewer .tree-file .section-text .line")
    numbers = shown.evaluate_all("ls => ls.map(l => l.dataset.n)")
    assert numbers[35:38] == ["36", "37", "38"], numbers[30:40]
    assert shown.nth(36).inner_text().strip() in ("", "\u200b")  # the blank line, kept
    expect(page.locator("#viewer .tree-file .section-where")).to_have_count(1)  # one file, one heading


# ---- 2. the nearest passage is not support, in colour and in words ---------------------------------------


def test_the_nearest_passage_looks_different_from_support_and_says_so_at_the_highlight(
        page: Any, server: Server) -> None:
    open_page(page)
    choose_only(page, ZIP_NAME)
    answer, claims = code_claims(server)
    msg = ask_scripted(page, done(answer, claims=claims, grounding={"grounded": 1, "checked": 2, "unsupported": 1}))
    msg.locator(".answer .claim-mark").first.click()
    support = page.locator("#viewer mark.quote").first
    expect(page.locator("#viewer .mark-label.support")).to_contain_text("supporting sentence 1")
    support_colour = support.evaluate("e => getComputedStyle(e).backgroundColor")
    msg.locator(".answer .claim-mark.unsupported").click()
    nearest = page.locator("#viewer mark.nearest").first
    expect(nearest).to_be_in_viewport()
    label = page.locator("#viewer .mark-label.nearest")
    expect(label).to_have_text(re.compile(r"Nearest passage, not support: it does not back sentence 2"))
    expect(label).to_be_in_viewport()
    assert nearest.evaluate("e => getComputedStyle(e).backgroundColor") != support_colour
    assert nearest.evaluate("e => getComputedStyle(e).outlineStyle") == "dashed"
    gap = nearest.bounding_box()["y"] - label.bounding_box()["y"]
    assert 0 < gap < 60, gap  # the words sit right above the highlighted line
    expect(page.locator("#viewer-where .warning")).to_be_in_viewport()


# ---- 4. a stall is judged against the measured rate ------------------------------------------------------


def test_a_stall_is_judged_against_the_rate_and_the_progress_interval(page: Any) -> None:
    open_page(page)
    limits = page.evaluate("""async () => {
        const { stallAfter } = await import('/static/conversation.js');
        return {
            slowReading: stallAfter({ stage: 'reading', rate: 40, step: 512 }),
            fastReading: stallAfter({ stage: 'reading', rate: 400, step: 512 }),
            unknown: stallAfter({ stage: 'sending' }),
            writing: stallAfter({ stage: 'writing', rate: 12 }),
            chunks: stallAfter({ stage: 'reading', chunkS: 30 }),
            seenGap: stallAfter({ stage: 'reading', rate: 400, step: 512, gap: 20 }),
        };
    }""")
    assert limits["slowReading"] >= 3 * 512 / 40, limits  # 12.8 s between updates is normal at 40 tokens/s
    assert limits["fastReading"] == 10 and limits["unknown"] == 10 and limits["writing"] == 10, limits
    assert limits["chunks"] == 90 and limits["seenGap"] == 40, limits


# ---- 5. withheld answers ------------------------------------------------------------------------------


def test_a_withheld_answer_shows_its_draft_collapsed_and_nothing_for_an_operator(page: Any, server: Server) -> None:
    open_page(page)
    choose_only(page, LEASE_NAME)
    lid = documents(server)[LEASE_NAME]["id"]
    nearest = {"document_id": lid, "filename": LEASE_NAME, "page": None, "path": LEASE_NAME, "line_start": 2,
               "line_end": 2, "chunk": None, "text": "This Agreement is governed by the laws of England and Wales."}
    junk = [{"text": f"Sentence {i} of a rambling draft.", "status": "unsupported", "score": 10.0, "missing": ["x"],
             "passage": None, "nearest": nearest} for i in range(34)]
    draft = " ".join(c["text"] for c in junk)
    note = (f'The model answered "{draft[:300]}", but no passage of the documents supports that as an answer to the '
            "question; it is kept as the draft (DOCQA_UNSUPPORTED_ANSWERS=show shows such answers as they are).")
    withheld = done("The documents do not seem to say: docqa found nothing in them that supports the model's answer, "
                    "so it is not shown as one.", claims=junk, draft=draft,
                    notes=[note, "34 of 34 statement(s) in this answer could not be found in the documents; check them "
                           "before relying on them (see claims).", "Read in one context."],
                    stop_reason="length", grounding={"grounded": 0, "checked": 34, "unsupported": 34})
    msg = ask_scripted(page, withheld, "Who pays for repairs?")
    expect(msg.locator(".claims > li")).to_have_count(0)  # no rows of junk sentences
    box = msg.locator("details.grounding.withheld")
    expect(box).to_have_count(1)
    assert box.get_attribute("open") is None  # collapsed
    expect(box.locator("summary")).to_contain_text("Withheld draft")
    expect(box.locator(".draft-text")).to_contain_text("Sentence 0 of a rambling draft.")
    box.locator("summary").click()
    box.locator(".draft-text .claim-mark").nth(3).click()  # a sentence of the draft still opens its passage
    expect(page.locator("#viewer .mark-label.nearest")).to_be_in_viewport()
    expect(msg).not_to_contain_text("DOCQA_")
    expect(msg.locator(".notes")).to_have_text("Read in one context.")
    expect(msg.get_by_role("button", name="Continue the answer")).to_have_count(0)


def test_a_withheld_batch_answer_shows_no_grounded_count(page: Any) -> None:
    item = {"status": "done", "question": "Who pays?", "answer": "The documents do not seem to say.",
            "draft": "A rambling draft.", "claims": [{"text": "A rambling draft.", "status": "supported"}] * 38,
            "grounding": {"grounded": 38, "checked": 38}, "citations": [], "filename": LEASE_NAME,
            "document_id": None, "timings": {"item_s": 3.0}}
    finished = {"id": "c" * 32, "status": "done", "done": 1, "failed": 0, "cancelled": 0, "running": 0, "queued": 0,
                "total": 1, "document_ids": [], "n_questions": 1, "first_question": "Who pays?",
                "created_at": "2026-12-01T10:00:00", "results": [item]}
    page.route("**/api/batches", lambda route: route.fulfill(json=[finished]))
    page.route(f"**/api/batches/{'c' * 32}", lambda route: route.fulfill(json=finished))
    open_page(page)
    page.click("#tab-batch")
    page.locator("#batch-list").get_by_role("button", name=re.compile("^Open")).click()
    cell = page.locator("#batch-results td.grounding-cell")
    expect(cell).to_contain_text("Withheld")
    expect(cell).not_to_contain_text("grounded")


# ---- 6. batches told apart ---------------------------------------------------------------------------


def test_past_batches_show_their_first_question_and_count_and_the_eta_leaves_out_the_first_reading(
        page: Any) -> None:
    first = {"status": "done", "question": "q1", "answer": "A.", "claims": [], "grounding": {}, "citations": [],
             "filename": LEASE_NAME, "document_id": "d1",
             "timings": {"item_s": 600.0, "prefill_s": 590.0, "prefill_tokens": 60_000, "prefix_source": "evaluated"}}
    waiting = {**first, "status": "queued", "answer": None, "timings": {}}
    running = {"id": "b" * 32, "status": "running", "done": 1, "failed": 0, "cancelled": 0, "running": 0,
               "queued": 3, "total": 4, "document_ids": [], "n_questions": 4,
               "first_question": "What is the notice period?", "created_at": "2026-12-01T10:00:00",
               "results": [first, waiting, waiting, waiting]}
    other = {**running, "id": "e" * 32, "status": "done", "done": 1, "queued": 0, "total": 1, "n_questions": 1,
             "first_question": "Who are the parties?"}
    page.route("**/api/batches", lambda route: route.fulfill(json=[running, other]))
    page.route(f"**/api/batches/{'b' * 32}", lambda route: route.fulfill(json=running))
    open_page(page)
    page.click("#tab-batch")
    items = page.locator("#batch-list li.batch-item")
    expect(items.nth(0).locator(".batch-first")).to_have_text("“What is the notice period?” and 3 other questions")
    expect(items.nth(1).locator(".batch-first")).to_have_text("“Who are the parties?”")
    items.nth(0).get_by_role("button", name=re.compile("^Open")).click()
    # 3 items left at the first item's time without its reading (10 s each), not at 600 s each (30 min)
    expect(page.locator("#batch-label")).to_have_text("Running: 1 of 4 answered · about 30 s left")


def test_the_first_question_of_a_real_batch_is_listed(server: Server) -> None:
    lid = documents(server)[LEASE_NAME]["id"]
    created = httpx.post(f"{server.url}/api/batches", json={"document_ids": [lid], "questions": ["Who pays?", "When?"]})
    assert created.status_code == 202, created.text
    httpx.delete(f"{server.url}/api/batches/{created.json()['id']}")  # nothing needs answering here
    listed = {b["id"]: b for b in httpx.get(f"{server.url}/api/batches").json()}[created.json()["id"]]
    assert listed["first_question"] == "Who pays?" and listed["n_questions"] == 2, listed


def test_exact_token_counts_survive_a_reload(page: Any) -> None:
    open_page(page)
    choose_only(page, LEASE_NAME)
    meta = doc_item(page, LEASE_NAME).locator(".meta")
    expect(meta).to_contain_text(re.compile(r"[\d,]+ tokens \(exact, with instructions\)"))
    exact = meta.inner_text()
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(doc_item(page, LEASE_NAME).locator(".meta")).to_have_text(exact)  # nothing ticked: still exact


# ---- 7. the phone ---------------------------------------------------------------------------------------


def test_on_a_phone_the_question_comes_first_and_the_viewer_is_a_sheet_with_close_at_hand(
        browser: Any, server: Server) -> None:
    context, page, problems = new_page(browser, server, width=360, height=740)
    try:
        open_page(page)
        expect(page.locator("#question")).to_be_in_viewport()  # no scrolling 2,200 px to find it
        expect(page.locator("#ask-button")).to_be_in_viewport()
        page.click("#choose-documents")  # the documents are one tap away
        expect(page.locator("#docs-h")).to_be_in_viewport()
        choose_only(page, ZIP_NAME)
        answer, claims = code_claims(server)
        msg = ask_scripted(page, done(answer, claims=claims, grounding={"grounded": 1, "checked": 2, "unsupported": 1}))
        msg.locator(".answer .claim-mark.unsupported").click()
        viewer = page.locator("#viewer")
        box = viewer.bounding_box()
        assert box["x"] == 0 and box["y"] == 0 and box["width"] == 360 and box["height"] == 740, box  # a sheet
        expect(page.locator("#viewer mark.nearest")).to_be_in_viewport()
        save_shot(page, "page-360.png")
        close = page.locator("#viewer-close")
        expect(close).to_be_in_viewport()
        gap = page.locator("#viewer mark").first.bounding_box()["y"] - close.bounding_box()["y"]
        assert gap < 500, gap  # not 800 px above the highlight
        page.locator("#viewer-scroll").evaluate("e => { e.scrollTop = e.scrollHeight; }")
        expect(close).to_be_in_viewport()
        assert page.evaluate("document.querySelector('.layout > .work').inert")  # the page under the sheet waits
        assert overflow_x(page)["scrollWidth"] <= 360
        close.click()
        expect(viewer).to_be_hidden()
        expect(msg.locator(".answer .claim-mark.unsupported")).to_be_focused()
        page.click("#tab-batch")
        box_, label = page.locator("#batch-per-document").bounding_box(), page.locator(
            "label[for=batch-per-document]").bounding_box()
        assert abs(box_["y"] - label["y"]) < 12 and label["x"] > box_["x"], (box_, label)  # side by side
    finally:
        context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def test_on_a_phone_the_sentences_are_stepped_through_at_the_bottom_of_the_sheet(
        browser: Any, server: Server) -> None:
    """One hand: the next sentence's passage and the way back to the answer are at the bottom of the sheet."""
    context, page, problems = new_page(browser, server, width=360, height=740)
    try:
        open_page(page)
        page.click("#choose-documents")
        choose_only(page, ZIP_NAME)
        answer, claims = code_claims(server)
        msg = ask_scripted(page, done(answer, claims=claims, grounding={"grounded": 1, "checked": 2, "unsupported": 1}))
        msg.locator(".answer .claim-mark").first.click()
        expect(page.locator("#viewer .mark-label.support")).to_be_visible()
        prev, back, nxt = page.locator("#viewer-prev"), page.locator("#viewer-back"), page.locator("#viewer-next")
        expect(prev).to_be_hidden()
        expect(nxt).to_have_text("Sentence 2 ›")
        for button in (back, nxt):  # in the bottom quarter of the screen, where a thumb is
            box = button.bounding_box()
            assert box and box["y"] >= 740 * 0.75 and box["y"] + box["height"] <= 740, box
        nxt.click()
        expect(page.locator("#viewer mark.nearest")).to_be_visible()
        expect(page.locator("#viewer-where .warning.nearest")).to_contain_text("does not support")
        expect(prev).to_have_text("‹ Sentence 1")
        expect(nxt).to_be_hidden()
        back.click()
        expect(page.locator("#viewer")).to_be_hidden()
        expect(msg.locator(".answer .claim-mark.unsupported")).to_be_focused()  # the last sentence looked at
        # beside the answer on a wide screen: the same steps, and no "Back" (the answer is in view)
        page.set_viewport_size({"width": 1366, "height": 900})
        msg.locator(".answer .claim-mark.unsupported").click()
        expect(prev).to_have_text("‹ Sentence 1")
        expect(back).to_be_hidden()
        prev.click()
        expect(page.locator("#viewer .mark-label.support")).to_be_visible()
        assert overflow_x(page)["scrollWidth"] <= 1366
    finally:
        context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


# ---- 8. smaller things ------------------------------------------------------------------------------------


def test_the_plan_is_above_the_fold_with_three_documents(page: Any, server: Server) -> None:
    httpx.post(f"{server.url}/api/documents", files={"file": ("third-notes.txt", b"A third note.\n", "text/plain")})
    open_page(page)
    choose_only(page, ZIP_NAME, LEASE_NAME, "third-notes.txt")
    expect(page.locator("#documents li.doc")).to_have_count(3)
    expect(page.locator("#plan-text")).to_contain_text("tokens")
    plan = page.locator("#plan-text").bounding_box()
    assert plan["y"] + plan["height"] <= 900, plan
    expect(page.locator("#plan-reading")).to_be_in_viewport()


def test_focus_moves_to_the_answer_when_it_arrives(page: Any) -> None:
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.focus("#question")
    page.keyboard.type("What is the rent?")
    scripted(page, done("The rent is EUR 4,500."))
    page.focus("#ask-button")
    page.keyboard.press("Enter")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    expect(page.locator("#history .msg.assistant").last).to_be_focused()


def test_a_cancelled_question_keeps_its_text_and_leaves_no_empty_session(page: Any, server: Server) -> None:
    before = len(httpx.get(f"{server.url}/api/sessions").json())
    held: list[Any] = []
    page.route("**/api/sessions/*/questions", lambda route: held.append(route))
    open_page(page)
    choose_only(page, LEASE_NAME)
    page.fill("#question", "What is the notice period, exactly?")
    page.click("#ask-button")
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#question")).to_have_value("")
    page.click("#stop-button")
    expect(page.locator("#history .msg.assistant.failed .error")).to_contain_text("Stopped")
    expect(page.locator("#question")).to_have_value("What is the notice period, exactly?")
    expect(page.locator("#ask-button")).to_be_enabled()
    expect(page.locator("#sessions button.session")).to_have_count(before)
    assert len(httpx.get(f"{server.url}/api/sessions").json()) == before
    assert "session=" not in page.url


def test_a_source_of_the_previous_session_closes_when_a_new_one_opens(page: Any, server: Server) -> None:
    open_page(page)
    choose_only(page, ZIP_NAME)
    answer, claims = code_claims(server)
    msg = ask_scripted(page, done(answer, claims=claims))
    msg.locator(".answer .claim-mark").first.click()
    expect(page.locator("#viewer")).to_be_visible()
    page.click("#new-session")
    expect(page.locator("#viewer")).to_be_hidden()
    msg = ask_scripted(page, done(answer, claims=claims))
    msg.locator(".answer .claim-mark").first.click()
    expect(page.locator("#viewer")).to_be_visible()
    choose_only(page, LEASE_NAME)  # another choice: the next question opens a new session
    ask_scripted(page, done("The rent is EUR 4,500."), "What is the rent?")
    expect(page.locator("#viewer")).to_be_hidden()
