"""E-mail (.eml) and mailboxes (.mbox) with attachments, end to end over HTTP: each message a section
with its headers, each attachment read by its own reader and cited by its name, what cannot be read
listed as skipped. Messages are built here with the standard library's email package; the PDF and Word
attachments are real files (tests/builders.py, tests/doc_builders.py).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest

from docqa.engine.citations import attribute, extract_citations
from docqa.engine.prompts import render_section
from docqa.engine.sources import from_rows
from tests import builders, doc_builders
from tests.test_ingest import all_sections, app_client, assert_refused, created

PDF_PAGES = ["Quarterly report. Revenue rose.", "Page two: the audit found no issues.",
             "Page three: the settlement amount is 1.2 million euros."]


def message(subject: str = "Settlement terms", body: str = "Please find the report attached.\nRegards, Ana",
            *, html: str | None = None, attachments: list[tuple[bytes, str, str, str]] = ()) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ana Núñez <ana@example.org>"
    msg["To"] = "Counsel <counsel@example.com>"
    msg["Date"] = "Tue, 04 Mar 2025 10:15:00 +0100"
    msg["Subject"] = subject
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for data, maintype, subtype, filename in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def full_message() -> bytes:
    return message(attachments=[
        (builders.make_pdf(PDF_PAGES), "application", "pdf", "report.pdf"),
        (doc_builders.contract_docx(), "application", "vnd.openxmlformats-officedocument.wordprocessingml.document",
         "msa.docx"),
        (b"Call notes: the other side accepts the cap.\nNext call on Friday.\n", "text", "plain", "notes.txt"),
        (builders.make_png(), "image", "png", "logo.png"),
        (builders.make_encrypted_pdf(["secret"]), "application", "pdf", "locked.pdf"),
    ]).as_bytes(policy=SMTP)


def test_eml_with_attachments_is_one_document_cited_by_attachment(client):
    doc = created(client, "mail.eml", full_message())
    assert doc["kind"] == "email" and doc["media_type"] == "message/rfc822" and doc["parser"] == "email"
    [info] = doc["meta"]["messages"]
    assert info["from"] == "Ana Núñez <ana@example.org>" and info["subject"] == "Settlement terms"
    assert info["date"] == "Tue, 04 Mar 2025 10:15:00 +0100" and info["to"] == "Counsel <counsel@example.com>"
    assert info["attachments"] == ["report.pdf", "msa.docx", "notes.txt", "logo.png", "locked.pdf"]
    skipped = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {"logo.png", "locked.pdf"}
    assert "PNG" in skipped["logo.png"] and "password" in skipped["locked.pdf"]

    sections = all_sections(client, doc["id"])
    body = sections[0]
    assert body["path"] is None and body["line_start"] == 1
    assert body["text"].startswith("From: Ana Núñez <ana@example.org>\nTo: Counsel <counsel@example.com>\n")
    assert "Subject: Settlement terms\n\nPlease find the report attached." in body["text"]
    pdf = [s for s in sections if s["path"] == "report.pdf"]
    assert [(s["page"], s["text"]) for s in pdf] == [(i, t) for i, t in enumerate(PDF_PAGES, start=1)]
    word = [s for s in sections if s["path"] == "msa.docx"]
    assert word and any(s["clause"] == "4.2" and "sixty days" in s["text"] for s in word)
    [notes] = [s for s in sections if s["path"] == "notes.txt"]
    assert (notes["line_start"], notes["line_end"]) == (1, 2)

    service = client.app.state.documents
    sources = [from_rows(service.get(doc["id"]), service.all_sections(doc["id"]))]
    rendered = [render_section(d, s) for d, ss in sources for s in ss]
    assert any(r.startswith("[report.pdf p. 3]\n") for r in rendered)
    assert any(r.startswith("[msa.docx §4.2 ¶") for r in rendered)
    answer = ('The amount [report.pdf p. 3] "the settlement amount is 1.2 million euros". '
              'Not on page two [report.pdf p. 2] "1.2 million euros". '
              'Notice [msa.docx §4.2 ¶3] "The notice period is sixty days". '
              'The cap [notes.txt:L1] "the other side accepts the cap". '
              'Sender [mail.eml:L1] "Ana Núñez".')
    cites = extract_citations(answer, sources)
    assert [(c.page, c.path, c.clause, c.verified) for c in cites] == [
        (3, "report.pdf", None, True), (2, "report.pdf", None, False), (None, None, "4.2", True),
        (None, "notes.txt", None, True), (None, "mail.eml", None, True)]
    [matched] = attribute("The audit found no issues.", sources)
    assert (matched.marker, matched.path, matched.verified) == ("[report.pdf p. 2]", "report.pdf", True)


def test_html_only_body_goes_through_the_html_reader_and_plain_wins_when_both(client):
    html = ("<html><body><nav>menu</nav><h1>Offer</h1><p>We offer <b>4,000 euros</b>.</p>"
            "<script>alert(1)</script></body></html>")
    only_html = EmailMessage()
    only_html["From"], only_html["Subject"] = "a@example.org", "Offer"
    only_html.set_content(html, subtype="html")
    doc = created(client, "offer.eml", only_html.as_bytes())
    sections = all_sections(client, doc["id"])
    assert sections[0]["text"] == "From: a@example.org\nSubject: Offer"
    assert [(s["clause"], s["text"]) for s in sections[1:]] == [("Offer", "We offer 4,000 euros.")]
    both = created(client, "both.eml", message(body="Plain words.", html="<p>Rich words.</p>").as_bytes())
    text = "\n".join(s["text"] for s in all_sections(client, both["id"]))
    assert "Plain words." in text and "Rich words." not in text


def test_mbox_messages_are_numbered_and_forwarded_messages_read(client):
    forwarded = message("Original", "The original offer was 3,000 euros.")
    outer = message("Fwd: Original", "See below.")
    outer.add_attachment(forwarded)
    # an mbox writer escapes a body line that starts with "From " (">From "): it starts no message
    first = message("First", "The first message.\n\n>From the start, a quoted line.")
    mbox = b"".join(b"From sender@example.org Tue Mar  4 10:15:00 2025\n" + m.as_bytes() + b"\n"
                    for m in (first, outer, message("Third", "Third body.", attachments=[
                        (b"col1,col2\n1,2\n", "text", "csv", "data.csv")])))
    doc = created(client, "list.mbox", mbox)
    assert doc["media_type"] == "application/mbox"
    messages = doc["meta"]["messages"]
    assert [(m["n"], m["subject"], m.get("path")) for m in messages] == [
        (1, "First", "message 1"), (2, "Fwd: Original", "message 2"),
        (2, "Original", "message 2/attachment-1.eml"), (3, "Third", "message 3")]
    by_path = {s["path"]: s["text"] for s in all_sections(client, doc["id"])}
    assert "The first message.\n\n>From the start, a quoted line." in by_path["message 1"]
    assert "The original offer was 3,000 euros." in by_path["message 2/attachment-1.eml"]
    assert by_path["message 3/data.csv"] == "col1,col2\n1,2"


def test_unreadable_mail_and_outlook_msg_are_refused_with_a_sentence(client, settings):
    assert_refused(client, settings, "empty.mbox", b"no messages here\n", 422, "empty.mbox holds no messages")
    assert_refused(client, settings, "note.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, 415,
                   "note.msg is an Outlook message", "Save it as an .eml file")


def test_mail_limits_count_messages_and_attachments(tmp_path):
    attachments = [(f"note {i}\n".encode(), "text", "plain", f"n{i}.txt") for i in range(6)]
    with app_client(tmp_path, max_archive_entries=5) as (c, s):
        assert_refused(c, s, "many.eml", message(attachments=attachments).as_bytes(), 422,
                       "many.eml has more than 5 messages and attachments")


@pytest.mark.parametrize("depth", [5])
def test_messages_nested_too_deeply_are_skipped_not_followed(client, depth):
    msg = message("Level 0", "innermost")
    for level in range(1, depth + 1):
        outer = message(f"Level {level}", f"body {level}")
        outer.add_attachment(msg)
        msg = outer
    doc = created(client, "deep.eml", msg.as_bytes())
    assert len(doc["meta"]["messages"]) == 4
    assert any("nested too deeply" in s["reason"] for s in doc["skipped"])


def test_real_mail_keeps_an_inline_text_part_after_its_body(client):
    """mail-parser's tests/mails/mail_test_3 (a real message, SpamScope/mail-parser, Apache-2.0): after the
    body, a mail filter added an inline text/plain `message.txt`, which `iter_attachments` leaves out as
    a body candidate; it is read as an attachment and cited by its name."""
    from tests.received import mirrored

    doc = created(client, "mail_test_3.eml", mirrored("SpamScope+mail-parser", "tests/mails/mail_test_3"))
    assert doc["meta"]["messages"][0]["attachments"] == ["message.txt"]
    sections = all_sections(client, doc["id"])
    assert sections[0]["text"].endswith("I am sending you the bills of the goods we delivered to you in the attachment")
    [note] = [s for s in sections if s["path"] == "message.txt"]
    assert "Action       : The Firebox deleted export_pdf_ 65acf801~.js." in note["text"].split("\n")
