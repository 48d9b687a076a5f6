"""One location, one label: citations, grounding's passages and the batch CSV spell a place alike."""

from __future__ import annotations

from docqa.batches import citation_text
from docqa.engine import grounding
from docqa.engine.grounding import Passage
from docqa.location import Location


def test_each_kind_of_place_has_one_label() -> None:
    assert Location(filename="lease.pdf", page=3).label() == "p. 3"
    assert Location(filename="lease.pdf", page=3).label(with_filename=True) == "lease.pdf p. 3"
    assert Location(filename="repo.zip", path="src/app.py", line_start=10, line_end=20).label() == "src/app.py:L10-L20"
    assert Location(filename="notes.md", line_start=4, line_end=4).label() == "notes.md:L4"
    assert Location(filename="contract.docx", clause="4.2", para_start=3, para_end=3).label() == "contract.docx §4.2 ¶3"
    assert Location(clause=None, para_start=2, para_end=5).label() == "¶2-5"
    assert Location(filename="plain.txt").label() == "plain.txt"


def test_grounding_passages_and_citations_read_as_the_same_location() -> None:
    """Grounding's passages (their `location()` dict) are Location-compatible: the marker grounding writes
    is the label in brackets, and the CSV's citation text starts with it."""
    for p in (Passage("d", "lease.pdf", 3, None, None, None, "The rent is due."),
              Passage("d", "notes.md", None, "notes.md", 4, 6, "Bed 4 grows beans.")):
        where = Location.of(p.location())
        assert grounding.marker(p.location()) == f"[{where.label()}]"
        cite = {**p.location(), "quote": p.text, "verified": True}
        assert citation_text(cite) == f'{where.label()}: "{p.text}"'
