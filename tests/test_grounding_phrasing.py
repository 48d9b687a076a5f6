"""Grounding on real documents nobody on the team wrote (bench/grounding_real/docs), the phrasings that
word matching used to get wrong: a negation in other words, the value "no" in quotes, a bound turned
round, an "only" the document does not say, a wrong e-mail address, a claim made of the documents'
common words, and facts that stand only in a title or a table line (issue #22). No model is needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from docqa.engine.grounding import COMMON_MISSING, ONLY_MISSING, Claim, Grounder
from docqa.engine.sources import Document, Section
from docqa.ingest import ParseLimits
from docqa.ingest.parse import parse_upload

DOCS = Path(__file__).resolve().parent.parent / "bench" / "grounding_real" / "docs"


def _grounder(name: str) -> Grounder:
    parsed = parse_upload((DOCS / name).read_bytes(), name, ParseLimits())
    doc = Document(id=name, filename=name, kind=parsed.kind, media_type=parsed.media_type)
    sections = [Section(ordinal=i, text=s.text, page=s.page, path=s.path, line_start=s.line_start,
                        line_end=s.line_end, heading=s.heading, clause=s.clause, para_start=s.para_start,
                        para_end=s.para_end) for i, s in enumerate(parsed.sections)]
    return Grounder([(doc, sections)])


@pytest.fixture(scope="module")
def docs() -> dict[str, Grounder]:
    return {n: _grounder(n) for n in ("dpkg-rootless-builds.txt", "CC0-1.0.txt", "GPL-3.txt", "git-jump-README.txt",
                                      "base-passwd-README.txt", "MPL-2.0.txt", "Apache-2.0.txt")}


def claim(g: Grounder, text: str, question: str = "") -> Claim:
    c = g.claim(text, question)
    assert c is not None
    return c


def lines(c: Claim) -> tuple[int, int]:
    assert c.passage is not None
    return c.passage["line_start"], c.passage["line_end"]


def test_the_value_no_in_quotes_is_no_negation(docs: dict[str, Grounder]) -> None:
    g = docs["dpkg-rootless-builds.txt"]
    c = claim(g, 'If "no" is used, it must be the only keyword in the field and appear exactly once.')
    assert c.status == "supported" and lines(c) == (32, 33)
    c = claim(g, 'The variable should not be defined when Rules-Requires-Root is "no" or "binary-targets".')
    assert c.status == "supported" and lines(c) == (119, 121)


def test_a_negation_in_other_words_holds_and_its_opposite_does_not(docs: dict[str, Grounder]) -> None:
    g = docs["dpkg-rootless-builds.txt"]
    c = claim(g, "If that variable is unset, the build system should assume the builder does not recognize the "
                 "field at all.")
    assert c.status == "supported" and lines(c) == (62, 64)
    assert claim(g, "If that variable is unset, the build system should assume the builder does recognize the "
                    "field.").status == "unsupported"
    g = docs["CC0-1.0.txt"]
    assert claim(g, "The fallback license is transferable and sublicensable.").status == "unsupported"  # "non …"


def test_a_bound_turned_round_is_not_supported(docs: dict[str, Grounder]) -> None:
    g = docs["GPL-3.txt"]
    wrong = claim(g, "The written offer is valid for at most three years, after which the source can be withdrawn.")
    assert wrong.status == "unsupported" and "<= 3" in wrong.missing
    assert claim(g, "The offer has to stay valid for at least three years.").status == "supported"


def test_only_needs_a_document_that_says_only(docs: dict[str, Grounder]) -> None:
    c = claim(docs["git-jump-README.txt"], "git-jump only works with vim.")
    assert c.status == "unsupported"
    assert claim(docs["git-jump-README.txt"], "-a is the same as -l -r only.").status == "unsupported"
    c = claim(docs["MPL-2.0.txt"], "Apart from the case in Section 10.3, no one other than the license steward has "
                                   "the right to modify or publish new versions of this License.")
    assert ONLY_MISSING not in c.missing


def test_an_e_mail_address_is_a_fact(docs: dict[str, Grounder]) -> None:
    g = docs["base-passwd-README.txt"]
    c = claim(g, "You request an allocation from debian-devel@lists.debian.org.")
    assert c.status == "unsupported" and "debian-devel@lists.debian.org" in c.missing
    c = claim(g, "You must first request an allocation from base-passwd@packages.debian.org and wait for "
                 "confirmation that it has been granted before using any uid or gid in that range.")
    assert c.status == "supported" and lines(c) == (85, 87)


def test_a_claim_of_the_documents_common_words_only_is_not_supported(docs: dict[str, Grounder]) -> None:
    # "Apache", "License", "source", "file", "work": every word of it is common in the Apache License
    g = docs["Apache-2.0.txt"]
    c = claim(g, "The Apache License must be included in every source file of your work.",
              "How do I apply the Apache License to my work?")
    assert c.status == "unsupported" and COMMON_MISSING in c.missing


def test_a_fact_written_only_in_a_title_or_a_table_line_does_not_withhold(docs: dict[str, Grounder]) -> None:
    g = docs["base-passwd-README.txt"]
    q = "What is the gid of the netplan group?"
    right = g.ground("The netplan group has gid 63434.", q)  # in the table: a line that may not support
    assert [c.status for c in right] == ["unsupported"] and g.answers(right, q)
    wrong = g.ground("The netplan group has gid 61234.", q)  # a number the README never states
    assert not g.answers(wrong, q)
    g = docs["GPL-3.txt"]
    q = "When was version 3 of the GPL published?"
    assert g.answers(g.ground("Version 3 of the GNU General Public License is dated 29 June 2007.", q), q)
    assert not g.answers(g.ground("Version 3 of the GNU General Public License is dated 29 June 2005.", q), q)
