"""Legislation and court documents in XML: USLM (US bills, laws, the US Code, the CFR) and Akoma Ntoso
(LegalDocML: acts, bills, judgments, debates), read by their structure, markup dropped.

Both are told apart from other XML by their namespace; any other XML stays code (path + lines).
lxml parses them with entity expansion, DTD loading and network access off and its size limits on
(no huge_tree): an external entity (XXE) is never fetched, an entity is never expanded (billion
laughs), and a document nested deeper than libxml2's limit is refused.

- Divisions, titles, parts, chapters, sections and articles, and any level with its own heading,
  open a section (outline.py) cited by their number: a section by its number (`§3`), a headed
  subsection below it by the path of numbers (`§3(a)`), a title or division by its kind and number
  (`§Title I`). The heading path ("SEC. 3. PROMOTING SECURITY › (a) Sense of Congress") is kept.
- Levels without a heading (paragraphs (1), subparagraphs (A), clauses (i), AKN points) are lines of
  their section, each starting with its number as printed: `(2) provide technical assistance…`;
  a citation names the section's clause and the line (`[bill.xml §3(b) ¶3]`).
- Metadata blocks and tables of contents are dropped (the TOC repeats every heading).
"""

from __future__ import annotations

import re

from lxml import etree

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

USLM_NAMESPACES = ("http://schemas.gpo.gov/xml/uslm", "http://xml.house.gov/schemas/uslm/1.0")
AKN_NAMESPACES = ("http://docs.oasis-open.org/legaldocml/ns/akn/3.0", "http://www.akomantoso.org/2.0")
_NS_DECL = re.compile(rb"""xmlns(?::[\w.-]+)?\s*=\s*["']([^"']+)["']""")

# levels that open a section even without a heading of their own
STRUCTURE = {"division", "subdivision", "title", "subtitle", "chapter", "subchapter", "part", "subpart",
             "book", "section", "article"}
# levels above the section: cited by their kind and number (§Title I); a section restarts the numbers
ABOVE_SECTION = STRUCTURE - {"section", "article"}
LEVELS = STRUCTURE | {"subsection", "paragraph", "subparagraph", "clause", "subclause", "item", "subitem",
                      "subsubitem", "level", "point", "indent", "alinea", "rule", "subrule", "proviso",
                      "hcontainer", "tblock", "subheading", "listItem", "blockContainer"}
DROPPED = {"meta", "amendMeta", "toc", "layout", "notes", "componentRef", "img", "coverPage"}
INLINE = {"inline", "ref", "date", "term", "shortTitle", "quotedText", "sup", "sub", "b", "i", "u", "span",
          "del", "ins", "def", "entity", "person", "organization", "role", "docNumber", "docTitle", "docStage",
          "docType", "docProponent", "docDate", "session", "legislature", "abbr", "em", "strong", "a",
          "noteRef", "omission", "marker", "mref", "rref", "affectedDocument", "amendingAction", "signature",
          "headingText", "concept", "object", "location", "time", "quantity", "judge", "party", "lawyer",
          "courtType", "neutralCitation", "docket", "argument", "remark", "vote", "outcome", "fillIn"}


def legal_flavour(data: bytes) -> str | None:
    """'uslm' or 'akn' when the document's start declares that namespace, else None."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return None
    for match in _NS_DECL.finditer(head):
        ns = match.group(1).decode("ascii", "replace").rstrip("/")
        if ns.startswith(USLM_NAMESPACES):
            return "uslm"
        if ns.startswith(AKN_NAMESPACES):
            return "akn"
    return None


def parse_legal_xml(data: bytes, name: str, limits: ParseLimits, flavour: str) -> ParsedDocument:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True, dtd_validation=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if "amplification" in exc.msg:
            raise InvalidDocument(f"{name} is unsafe: its entities expand to far more text than the file holds "
                                  "(a 'billion laughs' bomb).") from exc
        raise InvalidDocument(f"{name} is not well-formed XML ({exc.msg}).") from exc
    walker = _Walker(Outline(limits.section_max_chars))
    try:
        walker.walk(root)
    except RecursionError as exc:
        raise InvalidDocument(f"{name} nests its elements too deeply to read.") from exc
    sections = walker.finish()
    if not sections:
        raise InvalidDocument(f"{name} is {flavour.upper()} XML without any text.")
    title = _title(root)
    meta = {"xml": flavour, "title": normalize(title)} if title else {"xml": flavour}
    parser_name = "lxml (USLM)" if flavour == "uslm" else "lxml (Akoma Ntoso)"
    return ParsedDocument("legal_xml", "application/xml", sections, parser=parser_name, meta=meta)


def _local(node: etree._Element) -> str:
    tag = node.tag
    if not isinstance(tag, str):  # comments, PIs, entity references that were not expanded
        return ""
    return tag.rsplit("}", 1)[-1]


def _title(root: etree._Element) -> str:
    """The act's official title (USLM) or its FRBR name (Akoma Ntoso)."""
    for node in root.iter():
        name = _local(node)
        if name == "officialTitle":
            return " ".join("".join(node.itertext()).split())[:300]
        if name == "FRBRname" and node.get("value"):
            return str(node.get("value"))[:300]
    return ""


def _num(node: etree._Element) -> tuple[str, str]:
    """(the number as printed, "SEC. 3."; the number as cited, "3") of a level."""
    for child in node:
        if _local(child) == "num":
            printed = " ".join("".join(child.itertext()).split())
            value = (child.get("value") or "").strip()
            if not value:
                value = re.sub(r"^(?:sec(?:tion)?|art(?:icle)?|§|title|division|part|chapter)\.?\s*", "",
                               printed, flags=re.IGNORECASE)
                value = value.strip(" .—–-()[]:")
            return printed, value
    return "", ""


class _Walker:
    def __init__(self, outline: Outline) -> None:
        self.outline = outline
        self.inline: list[str] = []
        self.pending: list[str] = []  # numbers of unheaded levels, printed before their first text
        self.depth = 0
        self.clauses: list[str] = []  # the cited number path of the open levels

    def walk(self, node: etree._Element) -> None:
        if node.text:
            self.inline.append(node.text)
        for child in node:
            name = _local(child)
            if name and name not in DROPPED:
                self._element(child, name)
            if child.tail:
                self.inline.append(child.tail)

    def _element(self, node: etree._Element, name: str) -> None:
        if name == "num":
            return  # printed with its level
        if name in ("heading", "subheading") and not len(self.clauses):
            self.flush()
            self.outline.paragraph(normalize(" ".join("".join(node.itertext()).split())))
            return
        if name in ("heading",):
            return  # read with its level
        if name in LEVELS:
            self._level(node, name)
        elif name in ("tr",):
            self.flush()
            cells = [" ".join("".join(c.itertext()).split()) for c in node if _local(c) in ("td", "th")]
            if any(cells):
                self.outline.paragraph(normalize(" | ".join(cells)))
        elif name in INLINE:
            self.walk(node)
        else:
            self.flush()
            self.walk(node)
            self.flush()

    def _level(self, node: etree._Element, name: str) -> None:
        self.flush()
        printed, value = _num(node)
        heading = next((c for c in node if _local(c) == "heading"), None)
        heading_text = " ".join("".join(heading.itertext()).split()) if heading is not None else ""
        if name in STRUCTURE and not (printed or heading_text):  # e.g. a bare <title> in a preface: text
            self.walk(node)
            self.flush()
            return
        if name in STRUCTURE or heading_text:
            clause = self._clause(name, value, heading_text)
            self.depth += 1
            self.clauses.append(clause)
            self.pending = []
            self.outline.heading(self.depth, normalize(f"{printed} {heading_text}".strip() or name), clause=clause)
            self.walk(node)
            self.flush()
            self.clauses.pop()
            self.depth -= 1
            return
        if printed:
            self.pending.append(printed)
        self.walk(node)
        self.flush()
        self.pending = []

    def _clause(self, name: str, value: str, heading: str) -> str:
        parent = self.clauses[-1] if self.clauses else ""
        if not value:
            return heading[:80] or name
        if name in ABOVE_SECTION:
            return f"{name.capitalize()} {value}"
        if name in ("section", "article") or not parent or " " in parent:
            return value
        return f"{parent}({value})"

    def flush(self) -> None:
        text = normalize(" ".join("".join(self.inline).split()))
        self.inline = []
        if not text:
            return
        if self.pending:
            text = " ".join([*self.pending, text])
            self.pending = []
        self.outline.paragraph(text)

    def finish(self) -> list:
        self.flush()
        return self.outline.finish()
