"""Grounding on hand-written cases: every status, and the facts that must match (no model needed)."""

from __future__ import annotations

import pytest

from docqa.engine.grounding import Grounder, Passage, abstains, citations, facts, split_claims, summary
from docqa.store.models import Document, Section

LEASE = (
    "This Lease Agreement is made on 1 March 2025 between Alice Martin (the Landlord) and Bob Stone (the Tenant).\n"
    "The Tenant shall pay a monthly rent of EUR 4,500 on the first day of each month.\n"
    "This Agreement is governed by the laws of England and Wales.\n"
    "Either party may terminate this Agreement by giving thirty (30) days written notice.\n"
    "The market opens before dawn. Clocks in the tower strike every hour.\n"
)
CODE = 'DISCOUNTS = {"STAFF10": 0.10, "VIP25": 0.25}\n\ndef apply_discount(total, code):\n    return total\n'
QUESTION = "What is the monthly rent?"


@pytest.fixture(scope="module")
def grounder() -> Grounder:
    lease = Document(id="lease", filename="lease.txt", kind="text", sha256="a")
    code = Document(id="code", filename="shop.zip", kind="archive", sha256="b")
    return Grounder([
        (lease, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=5, text=LEASE)]),
        (code, [Section(id=2, ordinal=0, path="shop/discounts.py", line_start=1, line_end=4, text=CODE)]),
    ])


def one(grounder: Grounder, text: str, question: str = QUESTION, evidence: list[Passage] | None = None):
    claims = grounder.ground(text, question, evidence or [])
    assert len(claims) == 1, claims
    return claims[0]


def test_quoted_needs_the_quote_in_the_cited_lines_and_the_claims_facts(grounder: Grounder) -> None:
    c = one(grounder, 'The rent is EUR 4,500 a month [lease.txt:L2] "monthly rent of EUR 4,500".')
    assert c.status == "quoted" and c.score == 100.0
    assert c.passage is not None
    assert c.passage["quote"] == "monthly rent of EUR 4,500"
    assert (c.passage["filename"], c.passage["line_start"], c.passage["line_end"]) == ("lease.txt", 2, 2)
    assert c.passage["text"].startswith("The Tenant shall pay")
    # a real quote, but cited at the wrong lines: not quoted; still found by docqa, so supported
    moved = one(grounder, 'The rent is EUR 4,500 a month [lease.txt:L4] "monthly rent of EUR 4,500".')
    assert moved.status == "supported" and moved.passage["line_start"] == 2
    # a verified quote does not vouch for a number the quote lacks
    wrong = one(grounder, 'The rent is EUR 45 a month [lease.txt:L2] "monthly rent of EUR 4,500".')
    assert wrong.status == "unsupported" and wrong.missing == ["45"]


def test_supported_paraphrase_with_the_amount_written_another_way(grounder: Grounder) -> None:
    c = one(grounder, "The tenant pays 4500 euros every month.")
    assert c.status == "supported", c
    assert c.passage is not None and "EUR 4,500" in c.passage["text"]
    assert c.passage["line_start"] == 2 and c.score is not None and c.score >= 60
    date = one(grounder, "The lease was made on March 1, 2025.")
    assert date.status == "supported" and date.passage["line_start"] == 1
    days = one(grounder, "Either party can end the agreement with 30 days notice in writing.")
    assert days.status == "supported" and days.passage["line_start"] == 4


def test_wrong_number_is_not_supported_by_a_passage_that_looks_alike(grounder: Grounder) -> None:
    c = one(grounder, "The rent is 45 euros per month.")
    assert c.status == "unsupported"
    assert c.missing == ["45"]
    assert c.nearest is not None and "4,500" in c.nearest["text"]  # shown for comparison, not as support
    assert one(grounder, "The lease was made on 2 March 2025.").status == "unsupported"


def test_wrong_name_is_not_supported(grounder: Grounder) -> None:
    c = one(grounder, "The agreement is governed by the law of the European Union.")
    assert c.status == "unsupported" and c.missing == ["european union"]
    assert one(grounder, "The agreement is governed by the laws of England and Wales.").status == "supported"
    assert one(grounder, "The landlord is Carol Martin.").status == "unsupported"
    assert one(grounder, "The landlord is Alice Martin.").status == "supported"


def test_unsupported_and_the_two_neutral_statuses(grounder: Grounder) -> None:
    assert one(grounder, "Paris is the capital of France and hosts the tenant.").status == "unsupported"
    assert one(grounder, "The documents do not say who the guarantor is.").status == "not_in_documents"
    assert one(grounder, "You asked about the monthly rent.").status == "restates_question"
    claims = grounder.ground("The monthly rent. The rent is EUR 4,500. The document does not mention a deposit. "
                             "The deposit is EUR 9,000.", QUESTION)
    assert [c.status for c in claims] == ["restates_question", "supported", "not_in_documents", "unsupported"]
    counts = summary(claims)
    assert (counts["grounded"], counts["unsupported"], counts["checked"]) == (1, 1, 2)


def test_code_identifiers_are_facts(grounder: Grounder) -> None:
    c = one(grounder, 'The code VIP25 gives a 0.25 discount.', "Which discount codes exist?")
    assert c.status == "supported" and c.passage["path"] == "shop/discounts.py" and c.passage["line_start"] == 1
    assert one(grounder, "The code VIP30 gives a 0.25 discount.", "Which discount codes exist?").status == \
        "unsupported"


def test_chunked_evidence_is_kept_as_the_claims_passage(grounder: Grounder) -> None:
    quote = Passage("lease", "lease.txt", None, "lease.txt", 2, 2, "monthly rent of EUR 4,500", chunk=3)
    c = one(grounder, "The monthly rent is EUR 4,500.", "How much is paid?", [quote])
    assert c.status == "supported" and c.passage["chunk"] == 3 and c.passage["text"] == quote.text


def test_citations_from_claims_are_whole_sentences_not_fragments(grounder: Grounder) -> None:
    claims = grounder.ground("The tenant pays EUR 4,500 monthly. The VIP25 discount is 0.25.", "What applies?")
    cites = citations(claims)
    assert [c["marker"] for c in cites] == ["[lease.txt:L2]", "[shop/discounts.py:L1]"]
    assert cites[0]["quote"] == "The Tenant shall pay a monthly rent of EUR 4,500 on the first day of each month."
    assert all(c["verified"] and c["origin"] == "matched" for c in cites)


def test_claims_are_sentences_with_their_markers() -> None:
    assert split_claims('The fee is EUR 4,500. [p. 1] "EUR 4,500" See e.g. clause 4.5 below.\n- A bullet.') == [
        'The fee is EUR 4,500. [p. 1] "EUR 4,500"', "See e.g. clause 4.5 below.", "A bullet."]


def test_facts_read_numbers_dates_names_and_codes() -> None:
    f = facts("On 1 March 2025 Alice Martin paid EUR 4,500 and thirty (30) days later code VIP25 expired.")
    assert f.dates == {"2025-03-01"}
    assert {"4500", "30"} <= f.numbers
    assert "alice martin" in f.names and "vip25" in f.codes
    assert facts("March 1, 2025").dates == facts("2025-03-01").dates == {"2025-03-01"}
    assert facts("forty-five euros").numbers == {"45"}
    assert abstains("The text does not specify the deposit.") and not abstains("The deposit is EUR 9,000.")


# --- search (the lines shown next to the question) and whether an answer answers it -----------------


def test_search_finds_the_lines_with_the_questions_rarer_words(grounder: Grounder) -> None:
    found = grounder.search("How much rent does the tenant pay each month?", 3)
    assert found.passages and found.passages[0].text.startswith("The Tenant shall pay a monthly rent of EUR 4,500")
    assert found.passages[0].line_start == 2 and found.absent == []
    signed = grounder.search("When was it signed?", 3)  # "signed" meets nothing: no line, and the word is named
    assert signed.passages == [] and signed.absent == ["signed"]
    # a word every line has finds nothing on its own; the words no line holds are listed
    found = grounder.search("Who is the guarantor of the agreement?", 3)
    assert found.absent == ["guarantor"]
    assert all("guarantor" not in p.text for p in found.passages)
    assert grounder.search("Summarize this document.", 3).passages == []  # asks about nothing in particular


def test_a_claim_about_something_the_documents_never_name_is_not_supported(grounder: Grounder) -> None:
    # "terminate ... thirty (30) days" matches its other words, but the documents have no "vault"
    question = "What is the notice period of the blue vault?"
    c = one(grounder, "The notice period of the blue vault is thirty (30) days.", question)
    assert c.status == "unsupported" and set(c.missing) >= {"blue", "vault"}
    assert c.nearest is not None and "thirty (30) days" in c.nearest["text"]
    # one unknown word beside a known one is left to the similarity ("end" where the lease says "terminate")
    c = one(grounder, "Either party may end this Agreement by giving thirty (30) days written notice.",
            "How can a party end this Agreement?")
    assert c.status == "supported", c


def test_an_answer_answers_the_question_only_with_a_grounded_claim_about_it(grounder: Grounder) -> None:
    def answers(text: str, question: str) -> bool:
        return grounder.answers(grounder.ground(text, question), question)

    assert answers("The monthly rent is EUR 4,500.", QUESTION)
    assert answers("EUR 4,500 [lease.txt:L2].", QUESTION)  # the claim lacks the words, its passage has them
    assert not answers("The monthly rent is EUR 45.", QUESTION)  # every checked claim unsupported
    # grounded, but only copies a line unrelated to the question
    assert not answers("The document says that the market opens before dawn.", "Who carries the goods by ship?")
    assert answers("The documents do not say who the guarantor is.", "Who is the guarantor?")  # abstains
    assert answers("The Tenant pays a monthly rent of EUR 4,500.", "Summarize this document.")
    assert answers("Yes.", QUESTION)  # nothing to check: shown as it is


def test_an_answer_from_what_the_user_said_earlier_answers(grounder: Grounder) -> None:
    question = "What is my name?"
    claims = grounder.ground("Your name is Zorblat.", question)
    assert [c.status for c in claims] == ["unsupported"]  # the documents never name Zorblat
    assert grounder.answers(claims, question, said="My name is Zorblat. What is the monthly rent?")
    assert not grounder.answers(claims, question)
    assert not grounder.answers(claims, question, said="My name is Quentin.")


def test_a_claim_without_facts_about_an_unknown_subject_is_not_supported_by_common_words() -> None:
    lines = "".join(f"Clause {i}: this agreement binds the customer and the supplier.\n" for i in range(12))
    g = Grounder([(Document(id="c", filename="c.txt", kind="text", sha256="c"),
                   [Section(id=1, ordinal=0, path=None, line_start=1, line_end=12, text=lines)])])
    question = "Who is the guarantor of this agreement?"
    (c,) = g.ground("The guarantor of this agreement is the customer and the supplier.", question)
    assert c.status == "unsupported" and c.missing == ["guarantor"]
    (c,) = g.ground("This agreement binds the customer and the supplier.", question)  # no unknown word
    assert c.status == "supported"


# --- issue #22: real documents' hard-wrapped lines, fragments, headings, negation, loops ---------------

MPL = (
    "Mozilla Public License Version 2.0\n"
    "==================================\n"
    "\n"
    "10. Versions of the License\n"
    "---------------------------\n"
    "\n"
    "10.1. New Versions\n"
    "\n"
    "Mozilla Foundation is the license steward. Except as provided in Section\n"
    "10.3, no one other than the license steward has the right to modify or\n"
    "publish new versions of this License. Each version will be given a\n"
    "distinguishing version number.\n"
    "\n"
    "License.\n"
    "\n"
    "GNU GENERAL PUBLIC LICENSE\n"
    "\n"
    "This License does not grant permission to use the trade names, trade-\n"
    "marks, service marks, or product names of the Licensor.\n"
)


@pytest.fixture(scope="module")
def mpl() -> Grounder:
    doc = Document(id="mpl", filename="MPL-2.0.txt", kind="text", sha256="m")
    return Grounder([(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=19, text=MPL)])])


def test_passages_are_sentences_rebuilt_across_line_wraps(mpl: Grounder) -> None:
    singles = [p for p in mpl.passages if not p.pair]
    steward = next(p for p in singles if "no one other than" in p.text)
    assert steward.text == ("Except as provided in Section 10.3, no one other than the license steward has the right "
                            "to modify or publish new versions of this License.")
    assert (steward.line_start, steward.line_end) == (9, 11)
    # a word hyphenated at a line's end is joined again
    marks = next(p for p in singles if "trademarks" in p.text)
    assert (marks.line_start, marks.line_end) == (18, 19)
    headings = {p.text for p in singles if p.heading}
    assert {"Mozilla Public License Version 2.0", "GNU GENERAL PUBLIC LICENSE", "10.1. New Versions"} <= headings


def test_a_one_word_line_or_a_heading_never_supports(mpl: Grounder) -> None:
    # the cases: "License." and "GNU GENERAL PUBLIC LICENSE" supported whole sentences before
    for text in ("The document is also a copyleft license.",
                 "The GNU General Public License is a general public license.",
                 "The document contains several sections that provide information on how to apply the terms."):
        c = one(mpl, text, "What kind of license is it?")
        assert c.status != "supported" and c.status != "quoted", c
        assert c.passage is None
    assert one(mpl, "The document contains several sections that provide information on how to apply the terms.",
               "What is in it?").status == "too_general"


def test_a_short_whole_sentence_stating_a_fact_supports_but_a_fact_less_one_word_line_does_not() -> None:
    doc = Document(id="k", filename="passkey.txt", kind="text", sha256="k")
    g = Grounder([(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=3,
                                 text="License.\nThe pass key is 52817.\nKeep the pass key secret.\n")])])
    c = one(g, "The pass key is 52817.", "What is the pass key?")
    assert c.status == "supported" and c.passage["text"] == "The pass key is 52817.", c
    assert one(g, "The pass key is 52818.", "What is the pass key?").status == "unsupported"
    assert one(g, "This document is a license for the pass key.", "What is it?").passage is None


def test_a_paraphrase_across_a_line_wrap_is_supported(mpl: Grounder) -> None:
    # the withheld right answer: the document says "Mozilla Foundation is the license steward."
    c = one(mpl, "The license steward of the Mozilla Public License is Mozilla Foundation.",
            "Who is the license steward?")
    assert c.status == "supported", c
    assert c.passage is not None and c.passage["text"] == "Mozilla Foundation is the license steward."
    wrapped = one(mpl, "Apart from Section 10.3, only the license steward may modify or publish new versions of "
                       "the License.", "Who may publish new versions?")
    assert wrapped.status == "supported", wrapped
    assert (wrapped.passage["line_start"], wrapped.passage["line_end"]) == (9, 11)


def test_a_negation_is_not_the_claim_it_negates(mpl: Grounder) -> None:
    q = "May I use the Licensor's trademarks?"
    assert one(mpl, "This License does not grant permission to use the trademarks of the Licensor.", q).status \
        == "supported"
    flipped = one(mpl, "This License grants permission to use the trademarks of the Licensor.", q)
    assert flipped.status == "unsupported" and flipped.missing == ["not (the passage says the opposite)"], flipped
    assert flipped.nearest is not None and "does not grant" in flipped.nearest["text"]


def test_a_claim_that_the_documents_lack_what_they_hold_is_unsupported(mpl: Grounder) -> None:
    c = one(mpl, "The document does not mention the license steward.", "Who is the license steward?")
    assert c.status == "unsupported" and c.nearest is not None and "steward" in c.nearest["text"]
    assert one(mpl, "The document does not mention a guarantor.", "Who is the guarantor?").status == \
        "not_in_documents"


def test_a_looping_answer_is_cut_and_its_claims_listed_once(mpl: Grounder) -> None:
    from docqa.engine.loops import looping, max_repeats, tidy

    answer = "Mozilla Foundation is the license steward. " + "The document is a copyleft license. " * 57
    assert looping(answer)
    text, notes = tidy(answer)
    assert max_repeats(text) <= 2 and notes and "repeat itself" in notes[0]
    claims = mpl.ground(answer, "Who is the license steward?")
    assert len([c for c in claims if "copyleft" in c.text]) == 1  # identical claims listed once
    stutter, notes = tidy("The right to the right to the right to the right to the right to the right to")
    assert stutter == "The right to…" and notes
    assert one(mpl, "The right to the right to the right to the right to the right to use it.",
               "What is the right to use?").status == "unsupported"  # not "restates the question"
    # docqa's own prompt text is never a sentence of the answer
    echoed, notes = tidy('Mozilla Foundation is the license steward. No line of the documents contains: "cure".')
    assert echoed == "Mozilla Foundation is the license steward." and notes


def test_a_right_answer_in_other_words_is_shown_and_a_contradicted_one_withheld(mpl: Grounder) -> None:
    q = "Who is the license steward?"
    right = mpl.ground("The license steward of the Mozilla Public License is Mozilla Foundation.", q)
    assert mpl.withholds(right, q) is None
    # right but far from the document's words (nothing grounds it): shown, as nothing speaks against it
    loose = mpl.ground("Mozilla Foundation looks after the license and its new versions.", q)
    assert mpl.withholds(loose, q) is None, loose
    # against the document (another party than the passage names): withheld, with the reason for a reader
    wrong = mpl.ground("The license steward is the Apache Software Foundation.", q)
    why = mpl.withholds(wrong, q)
    assert why is not None and "apache software foundation" in why and "DOCQA_" not in why
    # the opposite negation alone is marked unsupported but does not withhold the answer: on the real set a
    # negation's scope was misread too often for it to count as strong evidence
    flipped = mpl.ground("This License grants permission to use the trademarks of the Licensor.", "May I?")
    assert [c.status for c in flipped] == ["unsupported"] and mpl.withholds(flipped, "May I?") is None
