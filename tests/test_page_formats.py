"""The viewer's views of the formats reviewers receive (issue #27, static/formats.js), in Debian's Chromium
against a real `docqa serve`: an e-mail's headers, body and attachment list (an attachment opens below,
one docqa could not read says why), a spreadsheet as a table with cell addresses (and a citation of a
row worded `Sheet1!A2:D2`), legal XML by its § numbers with a list to jump to them.

The documents are the ones the format tests build (tests/test_mail.py, test_sheets.py, test_legal_xml.py);
the real mail and by-law of tests/received.py are shown too when their snapshots are on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, Server, new_page
from tests.received import CAPE_TOWN_EVENTS, MIRRORS
from tests.test_legal_xml import USLM
from tests.test_mail import full_message
from tests.test_sheets import PRICES, xlsx

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("formats") / "data", env={"DOCQA_SEED": "1"})
    srv.start()
    for name, body in (("mail.eml", full_message()), ("prices.xlsx", xlsx({"Sheet1": PRICES})),
                       ("bill.xml", USLM)):
        r = httpx.post(f"{srv.url}/api/documents", files={"file": (name, body, "application/octet-stream")},
                       timeout=120)
        assert r.status_code == 201, r.text
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    yield pg
    context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def view(page: Any, filename: str) -> Any:
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    item = page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text=filename))
    item.get_by_role("button", name=f"View {filename}").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    return viewer


def test_an_email_shows_its_headers_body_and_attachments(page: Any) -> None:
    viewer = view(page, "mail.eml")
    mail = viewer.locator("article.mail").first
    expect(mail.locator(".mail-subject")).to_have_text("Settlement terms")
    headers = mail.locator(".mail-headers")
    assert headers.locator("dt").all_inner_texts() == ["From", "To", "Date", "Subject"]
    expect(headers.locator("dd").first).to_have_text("Ana Núñez <ana@example.org>")
    expect(mail.locator(".mail-body")).to_contain_text("Please find the report attached.")
    items = mail.locator(".mail-attachments li")
    expect(items).to_have_count(5)
    expect(items.nth(0)).to_have_text("report.pdf — 3 pages")
    expect(items.filter(has_text="logo.png")).to_contain_text("skipped:")
    expect(items.filter(has_text="locked.pdf")).to_contain_text("password")
    mail.get_by_role("button", name="report.pdf").click()
    part = mail.locator(".mail-part")
    expect(part.locator(".attachment-name")).to_have_text("report.pdf")
    expect(part.locator(".section-where").nth(2)).to_have_text("Page 3")
    expect(part).to_contain_text("the settlement amount is 1.2 million euros")
    mail.get_by_role("button", name="notes.txt").click()
    expect(part.locator(".line").first).to_have_attribute("data-n", "1")
    expect(part).to_contain_text("the other side accepts the cap")


def test_a_spreadsheet_is_a_table_with_cell_addresses_and_its_citations_name_cells(page: Any, server: Server) -> None:
    viewer = view(page, "prices.xlsx")
    table = viewer.locator("table.sheet-grid[data-sheet='Sheet1']")
    expect(table.locator("caption")).to_contain_text("Sheet1 — A1:D5")
    assert table.locator("thead th").all_inner_texts() == ["", "A", "B", "C", "D"]
    row = table.locator("tr[data-row='2']")
    expect(row.locator("th")).to_have_text("2")
    expect(row.locator("td[data-cell='D2']")).to_have_text("13.5")
    expect(row.locator("td[data-cell='A2']")).to_have_attribute("title", "Sheet1!A2")
    expect(table.locator("tr[data-row='4'] td[data-cell='D4']")).to_have_text("999")  # the cached value

    doc = next(d for d in httpx.get(f"{server.url}/api/documents").json() if d["filename"] == "prices.xlsx")
    citation = {"document_id": doc["id"], "filename": "prices.xlsx", "page": None, "path": "Sheet1",
                "line_start": 2, "line_end": 2, "quote": "Widget | 3", "verified": True, "marker": "[Sheet1:L2]",
                "origin": "model", "clause": None, "para_start": None, "para_end": None}
    answer = {"answer": 'Three widgets [Sheet1:L2] "Widget | 3".', "thinking": "", "citations": [citation],
              "mode": "whole", "timings": {}, "notes": [], "claims": [], "grounding": {}, "draft": None}
    body = (f"event: token\r\ndata: {json.dumps({'text': answer['answer']})}\r\n\r\n"
            f"event: done\r\ndata: {json.dumps(answer)}\r\n\r\n").encode()
    page.route("**/api/sessions/*/questions", lambda route: route.fulfill(
        status=200, headers={"content-type": "text/event-stream; charset=utf-8"}, body=body))
    page.locator("#viewer-close").click()
    checked = page.locator("#documents input[type=checkbox]:checked")
    while checked.count():
        checked.first.uncheck()
    page.locator("#documents li.doc").filter(has=page.locator(".filename", has_text="prices.xlsx")) \
        .locator("input[type=checkbox]").check()
    page.fill("#question", "How many widgets?")
    page.click("#ask-button")
    expect(page.locator("#ask-status")).to_have_text("Answered.")
    page.locator("#history .msg.assistant").last.locator(".chip").first.click()
    expect(page.locator("#viewer-where")).to_contain_text("prices.xlsx — Sheet1!A2:D2")
    expect(page.locator("#viewer mark.quote")).to_have_text("Widget | 3")


def test_legal_xml_shows_sections_by_their_numbers(page: Any) -> None:
    viewer = view(page, "bill.xml")
    sections = viewer.locator("article.section.legal")
    s3a = sections.filter(has=page.locator(".clause", has_text="§3(a)"))
    expect(s3a.locator(".heading")).to_have_text("(a) Sense of Congress.—")
    expect(s3a.locator(".line").first).to_have_attribute("data-n", "¶1")
    expect(s3a).to_contain_text("Congress should strengthen security cooperation.")
    toc = viewer.locator("nav.legal-toc")
    assert toc.locator(".clause").all_inner_texts()[:2] == ["§1", "§3(a)"]
    toc.get_by_role("button", name="§3(b) (b) Collaborative Efforts.—").click()
    expect(sections.filter(has=page.locator(".clause", has_text="§3(b)"))).to_be_in_viewport()


@pytest.mark.skipif(not (MIRRORS / CAPE_TOWN_EVENTS[0]).exists(), reason="the laws-africa/indigo snapshot is absent")
def test_a_real_akoma_ntoso_by_law_in_the_viewer(page: Any, server: Server) -> None:
    from tests.received import mirrored

    repo, commit, path = CAPE_TOWN_EVENTS
    r = httpx.post(f"{server.url}/api/documents", timeout=120,
                   files={"file": ("cape-town-events.xml", mirrored(repo, path, commit), "application/xml")})
    assert r.status_code == 201, r.text
    viewer = view(page, "cape-town-events.xml")
    s4a = viewer.locator("article.section.legal[data-clause='4A']")
    expect(s4a.locator(".heading")).to_have_text("4A. Safety Officer")
    expect(s4a).to_contain_text("(1) The event organiser must appoint a safety officer for the event.")
