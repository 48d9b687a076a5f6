"""HTML (a saved web page, an exported document): the main text, headings as sections.

BeautifulSoup (with lxml's HTML parser, which also works out the page's encoding) builds the
tree. Scripts, styles, navigation, headers, footers, asides, forms and hidden elements are
dropped; when the page marks its main content (<main>, or a single <article>), only that is read.
Block elements (paragraphs, list items, table rows, …) become paragraphs; h1-h6 open sections
(outline.py), so HTML is cited like Word: `[page.html §Heading ¶2]`.
"""

from __future__ import annotations

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import Comment, Doctype, ProcessingInstruction

from docqa.errors import InvalidDocument
from docqa.ingest import ParsedDocument, ParseLimits
from docqa.ingest.outline import Outline
from docqa.ingest.text import normalize

DROPPED = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
           "iframe", "object", "embed", "button", "select", "textarea", "canvas", "head", "menu", "dialog"]
DROPPED_ROLES = {"navigation", "banner", "contentinfo", "search", "menu", "menubar", "complementary"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = {"p", "div", "li", "ul", "ol", "table", "thead", "tbody", "tfoot", "blockquote", "section", "article",
          "main", "dl", "dt", "dd", "figure", "figcaption", "address", "details", "summary", "caption", "hr",
          "br", "body", "center", "fieldset", "legend"}


def parse_html(data: bytes | str, name: str, limits: ParseLimits) -> ParsedDocument:
    soup = BeautifulSoup(data, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(DROPPED):
        tag.decompose()
    for tag in soup.find_all(_hidden):
        tag.decompose()
    root = _main(soup)
    walker = _Walker(Outline(limits.section_max_chars))
    try:
        walker.walk(root)
    except RecursionError as exc:
        raise InvalidDocument(f"{name} nests its elements too deeply to read.") from exc
    sections = walker.finish()
    if not sections:
        raise InvalidDocument(f"{name} is a web page without any text in its main content.")
    meta = {"title": normalize(title)} if title else {}
    return ParsedDocument("html", "text/html", sections, parser="beautifulsoup4", meta=meta)


def _hidden(tag: Tag) -> bool:
    if tag.attrs is None:
        return False
    style = str(tag.get("style") or "").replace(" ", "").lower()
    return ("hidden" in tag.attrs or str(tag.get("aria-hidden", "")).lower() == "true"
            or str(tag.get("role", "")).lower() in DROPPED_ROLES or "display:none" in style)


def _role_main(tag: Tag) -> bool:
    return str(tag.get("role", "")).lower() == "main"


def _main(soup: BeautifulSoup) -> Tag:
    main = soup.find("main") or soup.find(_role_main)
    if isinstance(main, Tag):
        return main
    articles = soup.find_all("article")
    if len(articles) == 1:
        return articles[0]
    body = soup.body
    return body if body is not None else soup


class _Walker:
    """Depth-first over the tree: text runs gather into the current paragraph; a block ends it."""

    def __init__(self, outline: Outline) -> None:
        self.outline = outline
        self.inline: list[str] = []

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment | Doctype | ProcessingInstruction):
                continue
            if isinstance(child, NavigableString):
                self.inline.append(str(child))
            elif isinstance(child, Tag):
                self._tag(child)

    def _tag(self, tag: Tag) -> None:
        name = tag.name.lower()
        if name in HEADINGS:
            self.flush()
            self.outline.heading(HEADINGS[name], normalize(tag.get_text(" ")))
        elif name == "tr":
            self.flush()
            cells = [" ".join(c.get_text(" ").split()) for c in tag.find_all(["td", "th"], recursive=False)]
            if any(cells):
                self.outline.paragraph(normalize(" | ".join(cells)))
        elif name == "pre":
            self.flush()
            for line in tag.get_text().split("\n"):
                self.outline.paragraph(normalize(line))
        elif name in BLOCKS:
            self.flush()
            self.walk(tag)
            self.flush()
        else:
            self.walk(tag)

    def flush(self) -> None:
        text = normalize(" ".join("".join(self.inline).split()))
        self.inline = []
        if text:
            self.outline.paragraph(text)

    def finish(self) -> list:
        self.flush()
        return self.outline.finish()
