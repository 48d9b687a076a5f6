"""Where a passage is: one value, one label.

A place in a document is a page (PDF), a line range of a file (text, code, a zip member's path) or a
clause and paragraphs (Word, HTML). Parsed sections, stored sections, citations, grounding's
passages and the batch CSV all describe places with the same fields; `Location.of` reads any of
them (a citation's or a passage's dict, a section's attributes) and `label()` spells it the one way
a person reads it: "p. 3", "notes.md:L10-L20", "contract.docx §4.2 ¶3".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Location:
    filename: str | None = None
    page: int | None = None
    path: str | None = None
    line_start: int | None = None
    line_end: int | None = None
    clause: str | None = None
    para_start: int | None = None
    para_end: int | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Location:
        """The location in a citation's, a passage's or a section's fields (others are ignored)."""
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})

    def label(self, *, with_filename: bool = False) -> str:
        """"p. 3" ("file.pdf p. 3" with the file name), "notes.md:L10-L20", "file.docx §4.2 ¶3-4"."""
        if self.page is not None:
            return f"{self.filename} p. {self.page}" if with_filename and self.filename else f"p. {self.page}"
        if self.para_start is not None:
            clause = f" §{self.clause}" if self.clause else ""
            end = f"-{self.para_end}" if self.para_end not in (None, self.para_start) else ""
            return f"{self.filename or ''}{clause} ¶{self.para_start}{end}".strip()
        where = self.path or self.filename or "?"
        if self.line_start is None:
            return where
        end = f"-L{self.line_end}" if self.line_end not in (None, self.line_start) else ""
        return f"{where}:L{self.line_start}{end}"
