"""E-mail (.eml, one message) and mailboxes (.mbox, many), with their attachments, as one document.

The standard library's `email` package (policy `default`: headers decoded, MIME walked, bodies
decoded by their charset and transfer encoding) reads each message; an mbox is cut into messages at
its "From " lines, as the standard library's `mailbox` does (it needs a file on disk; this works on
the upload's bytes).

- A message is a section whose text starts with its From, To, Cc, Date and Subject lines, then the
  body: the plain-text alternative when there is one (the same words, fewer tokens), else the HTML
  body through the HTML reader (html.py). `meta.messages` lists each message's headers and
  attachments. In an mbox each message's sections carry the path `message N`.
- Each attachment is read by its own reader (PDF, Word, HTML, text, a zip or tarball, …: whatever
  `read_attachment` does for an upload of that name) as sections of the same document with the
  attachment's name as their path (`message N/name` in an mbox), so a PDF attachment is cited
  `[report.pdf p. 3]` and a text one `[notes.txt:L1-L4]`. An attached message (message/rfc822) is
  read as a message, to a depth of 3.
- What cannot be read (an image, a password-protected PDF, a format docqa does not read) is listed
  in `skipped` with the reader's own sentence as the reason; the rest of the mail is still read.
- Limits: the archive limits (DOCQA_MAX_ARCHIVE_ENTRIES for messages + attachments). An
  attachment's bytes are decoded from base64 or quoted-printable, so they are never more than the
  upload; a compressed attachment (a zip, a .docx) meets its reader's own guards.
"""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email.message import EmailMessage, Message, MIMEPart
from email.policy import default
from typing import Any

from docqa.errors import DocqaError, InvalidDocument
from docqa.ingest import ParsedDocument, ParsedSection, ParseLimits
from docqa.ingest.html import parse_html
from docqa.ingest.text import normalize, split_lines

MEDIA_TYPES = {"email": "message/rfc822", "mbox": "application/mbox"}
HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_DEPTH = 3
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)
_UNSAFE_NAME = re.compile(r"[\[\]:\\\n\r\t]+")

ReadAttachment = Callable[[bytes, str], ParsedDocument]


def parse_mail(data: bytes, name: str, limits: ParseLimits, read_attachment: ReadAttachment, *,
               mbox: bool = False) -> ParsedDocument:
    raw_messages = split_mbox(data) if mbox else [data]
    if not raw_messages:
        raise InvalidDocument(f"{name} holds no messages (an mbox starts each one with a 'From ' line).")
    reader = _Reader(name, limits, read_attachment)
    for n, raw in enumerate(raw_messages, start=1):
        message = email.message_from_bytes(raw, policy=default)
        if not isinstance(message, EmailMessage) or not (message.keys() or message.get_payload()):
            reader.skipped.append({"path": f"message {n}", "reason": "not an e-mail message"})
            continue
        reader.message(message, f"message {n}" if mbox else None, n)
    if not reader.sections:
        raise InvalidDocument(f"{name} contains no message text docqa can read ({len(reader.skipped)} parts skipped).",
                              skipped=reader.skipped)
    kind = "mbox" if mbox else "email"
    return ParsedDocument("email", MEDIA_TYPES[kind], reader.sections, skipped=reader.skipped, parser="email",
                          meta={"messages": reader.messages})


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox: each starts at a "From " line at the start of the file or after a
    blank line (the line itself is the envelope, not a header)."""
    starts = [m.start() for m in _FROM_LINE.finditer(data)
              if m.start() == 0 or data.endswith((b"\n\n", b"\r\n\r\n"), 0, m.start())]
    out = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        chunk = data[start:end]
        newline = chunk.find(b"\n")
        body = chunk[newline + 1:] if newline != -1 else b""
        if body.strip():
            out.append(body)
    return out


class _Reader:
    def __init__(self, name: str, limits: ParseLimits, read_attachment: ReadAttachment) -> None:
        self.name = name
        self.limits = limits
        self.read_attachment = read_attachment
        self.sections: list[ParsedSection] = []
        self.skipped: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.parts = 0

    def count(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_archive_entries:
            raise InvalidDocument(f"{self.name} has more than {self.limits.max_archive_entries} messages and "
                                  f"attachments; docqa reads at most {self.limits.max_archive_entries}.")

    def message(self, message: EmailMessage, path: str | None, number: int, depth: int = 0) -> None:
        self.count()
        headers = {h.lower(): _header(message, h) for h in HEADERS}
        info: dict[str, Any] = {"n": number, **{k: v for k, v in headers.items() if v}, "attachments": []}
        if path:
            info["path"] = path
        self.messages.append(info)
        head = "\n".join(f"{h}: {headers[h.lower()]}" for h in HEADERS if headers[h.lower()])
        body = message.get_body(preferencelist=("plain", "html"))
        self._body(body, head, path)
        names: set[str] = set()
        for part in _attachments(message, body):
            label = _unique(_attachment_name(part, len(names) + 1), names)
            where = f"{path}/{label}" if path else label
            info["attachments"].append(label)
            self._attachment(part, where, number, depth)

    def _body(self, body: MIMEPart | None, head: str, path: str | None) -> None:
        text = _text(body) if body is not None else ""
        if body is not None and body.get_content_subtype() == "html" and text.strip():
            self.sections.extend(split_lines(normalize(head), self.limits.section_max_chars, path=path))
            try:
                page = parse_html(text, self.name, self.limits)
            except InvalidDocument:
                return
            for section in page.sections:
                section.path = path
            self.sections.extend(page.sections)
            return
        whole = normalize(f"{head}\n\n{text.strip()}" if text.strip() else head)
        self.sections.extend(split_lines(whole, self.limits.section_max_chars, path=path))

    def _attachment(self, part: MIMEPart, where: str, number: int, depth: int) -> None:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() else None
            if isinstance(inner, EmailMessage) and depth < MAX_DEPTH:
                self.message(inner, where, number, depth + 1)
            else:
                self.skipped.append({"path": where, "reason": "an attached message nested too deeply"})
            return
        self.count()
        try:
            data = part.get_payload(decode=True)
        except (ValueError, LookupError, AssertionError):
            data = None
        if not isinstance(data, bytes) or not data:
            self.skipped.append({"path": where, "reason": "empty or undecodable attachment"})
            return
        try:
            doc = self.read_attachment(data, where.rsplit("/", 1)[-1])
        except DocqaError as exc:  # the reader's sentence, without its advice on what to upload instead
            self.skipped.append({"path": where, "reason": exc.detail.split(" Upload ")[0]})
            return
        for section in doc.sections:
            # a zip or tarball attached: its files' paths go below the attachment's name
            section.path = f"{where}/{section.path}" if section.path else where
        self.sections.extend(doc.sections)
        self.skipped.extend({"path": f"{where}/{s['path']}", "reason": s["reason"]} for s in doc.skipped)


def _attachments(message: EmailMessage, body: MIMEPart | None) -> list[MIMEPart]:
    """The parts of a message besides its body, in order: `iter_attachments`, and the inline text parts it
    leaves out as body candidates although another part is the body (Outlook and mail filters add a
    `message.txt` after the body: "The Firebox deleted export.js")."""
    attachments: list[MIMEPart] = list(message.iter_attachments())
    if not message.is_multipart() or message.get_content_subtype() in ("alternative", "related"):
        return attachments
    listed = {id(p) for p in attachments}
    inside_body = {id(p) for p in body.walk()} if body is not None else set()

    def left_out_text(part: MIMEPart) -> bool:
        return part.get_content_maintype() == "text" and not any(id(p) in inside_body for p in part.walk())

    return [part for part in message.iter_parts() if id(part) in listed or left_out_text(part)]


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):  # a header the parser chokes on: its raw text
        value = message.get_all(name, failobj=[""])[0] if hasattr(message, "get_all") else ""
    return " ".join(normalize(str(value or "")).split())


def _text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError, UnicodeError):  # an unknown charset: read it as UTF-8
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
    return content if isinstance(content, str) else ""


def _attachment_name(part: MIMEPart, n: int) -> str:
    try:
        filename = part.get_filename()
    except (ValueError, LookupError, TypeError):
        filename = None
    if not filename:
        subtype = {"rfc822": "eml", "plain": "txt"}.get(part.get_content_subtype(), part.get_content_subtype())
        return f"attachment-{n}.{subtype if subtype.isalnum() else 'bin'}"
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE_NAME.sub("_", normalize(base)).strip()[:200] or f"attachment-{n}"


def _unique(label: str, taken: set[str]) -> str:
    out, k = label, 2
    while out in taken:
        stem, dot, ext = label.rpartition(".")
        out = f"{stem} ({k}).{ext}" if dot else f"{label} ({k})"
        k += 1
    taken.add(out)
    return out
