"""Property-based tests (hypothesis) for chunking and citation checking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from docqa.engine.chunking import pack, parts_of
from docqa.engine.citations import extract_citations, squash
from docqa.store.models import Document, Section

words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=0, max_size=12)
lines = st.lists(st.lists(words, min_size=0, max_size=12).map(" ".join), min_size=1, max_size=30)


def count(text: str) -> int:
    """A stand-in tokenizer: one token per word, at least one per line."""
    return max(1, len(text.split()) + text.count("\n"))


@st.composite
def documents(draw):  # noqa: ANN001, ANN201
    doc = Document(id="d", filename="f.txt", kind="text")
    sections = []
    line_no = 1
    for i, body in enumerate(draw(st.lists(lines, min_size=1, max_size=8))):
        text = "\n".join(body)
        sections.append(Section(id=i, ordinal=i, text=text, path="f.txt", line_start=line_no,
                                line_end=line_no + len(body) - 1))
        line_no += len(body)
    return doc, sections


@settings(max_examples=150, deadline=None)
@given(documents(), st.integers(min_value=4, max_value=60), st.integers(min_value=0, max_value=20))
def test_every_character_lands_in_a_chunk_and_cuts_respect_sections(source, budget, overlap):
    doc, sections = source
    parts = parts_of([(doc, sections)], count, budget)
    chunks = pack(parts, budget, overlap)
    in_chunks = [p for chunk in chunks for p in chunk]
    for section in sections:
        own = [p for p in parts if p.section is section]
        # in order, every character of the section is in its parts, and nothing else is (cuts fall at
        # line breaks, or inside a single line too long for a chunk)
        assert "".join(p.text for p in own).replace("\n", "") == section.text.replace("\n", "")
        for p in own:
            assert p in in_chunks
            assert p.line_start is not None and section.line_start <= p.line_start <= p.line_end <= section.line_end
    # chunks keep document order and never exceed the budget unless one part alone does
    for chunk in chunks:
        assert sum(p.n_tokens for p in chunk) <= budget or len(chunk) == 1
    order = [parts.index(p) for p in in_chunks]
    firsts = [parts.index(chunk[0]) for chunk in chunks]
    assert firsts == sorted(firsts)
    assert set(order) == set(range(len(parts)))


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=3, max_size=60).filter(lambda q: not set(q) & set('"\n')))
def test_a_quote_not_in_the_text_is_never_verified(page_text, quote):
    doc = Document(id="d", filename="c.pdf", kind="pdf")
    section = Section(id=1, ordinal=0, page=1, text=page_text)
    answer = f'The contract says so [p. 1] "{quote}".'
    cits = extract_citations(answer, [(doc, [section])])
    assert cits, answer
    for c in cits:
        if c["verified"] if isinstance(c, dict) else c.verified:
            assert squash(quote) in squash(page_text)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=20, max_size=300).filter(lambda t: not set(t) & set('"“”«»\n')))
def test_a_quote_taken_from_the_page_is_verified(page_text):
    doc = Document(id="d", filename="c.pdf", kind="pdf")
    section = Section(id=1, ordinal=0, page=3, text=page_text)
    quote = page_text[2:18]
    if len(squash(quote)) < 3:
        return
    cits = extract_citations(f'As stated [p. 3] "{quote}".', [(doc, [section])])
    assert cits and cits[0].verified
