"""A generated, labelled set for grounding: contract-like documents and claims about them.

Every document is built from clause templates filled with seeded random parties, amounts, dates,
places and periods. Every claim about it is labelled with the index of the sentence that supports
it, or None:
- supported: the sentence verbatim, a paraphrase (other words, the amount or date written another
  way: "EUR 4,500" / "4500 euros", "1 March 2025" / "March 1, 2025", "thirty (30)" / "30"), a
  shortened form;
- unsupported: the same paraphrase with a wrong number (the amount divided by 100, "45 euros"),
  a wrong date, a wrong name (the other party, another place or law), or a claim about a clause
  the document does not have.
Used by bench/grounding.py (method choice) and bench/quality.py (haystack filler).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Keiko", "Luis"]
LAST = ["Martin", "Okafor", "Rossi", "Novak", "Schmidt", "Haddad", "Lindqvist", "Moreau", "Tanaka", "Silva"]
COMPANIES = ["Northwind Logistics Ltd", "Bluefield Analytics GmbH", "Harbor & Pine LLP", "Corvid Systems SA",
             "Meridian Foods plc", "Aster Renewables BV", "Kestrel Freight Inc"]
LAWS = ["England and Wales", "Scotland", "the State of New York", "Ireland", "the Netherlands", "Germany",
        "the Province of Ontario"]
CITIES = ["London", "Dublin", "Rotterdam", "Munich", "Toronto", "Lyon", "Geneva", "Oslo"]
CURRENCIES = [("EUR", "euros"), ("GBP", "pounds"), ("USD", "dollars")]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NUMBER_WORDS = {7: "seven", 10: "ten", 14: "fourteen", 15: "fifteen", 20: "twenty", 30: "thirty", 45: "forty-five",
                60: "sixty", 90: "ninety"}
FILLER = [
    "The parties have read this agreement carefully and agree to be bound by its terms.",
    "Headings are for convenience only and do not affect the interpretation of this agreement.",
    "Each party shall bear its own costs in connection with the negotiation of this agreement.",
    "Notices shall be given in writing and delivered by hand or by registered post.",
    "No failure or delay in exercising any right shall operate as a waiver of that right.",
    "If any provision is held invalid, the remaining provisions shall continue in full force.",
    "This agreement may be executed in any number of counterparts, each of which is an original.",
    "The recitals form part of this agreement and have effect as if set out in full.",
    "References to a statute include that statute as amended or re-enacted from time to time.",
    "A person who is not a party to this agreement has no right to enforce any of its terms.",
    "Each party warrants that it has full power and authority to enter into this agreement.",
    "The supplier shall keep complete and accurate records relating to the services.",
    "Any variation of this agreement must be in writing and signed by both parties.",
    "The customer shall co-operate with the supplier in all matters relating to the services.",
    "Time shall not be of the essence for the performance of any obligation unless stated.",
]
ABSENT = [  # claims about clauses no generated document has
    "The agreement requires the tenant to keep a pet insurance policy.",
    "The supplier must deliver the goods to {city} by ship.",
    "A late payment penalty of {n} percent applies to every invoice.",
    "The contract grants {name} an exclusive licence to the software.",
    "Disputes are settled by arbitration in {city}.",
]


@dataclass
class LabelledClaim:
    text: str
    support: int | None  # index in Doc.sentences, or None
    kind: str  # verbatim | paraphrase | short | wrong_number | wrong_date | wrong_name | absent
    numeric: bool  # whether the claim holds a number or date


@dataclass
class Doc:
    sentences: list[str]
    claims: list[LabelledClaim]

    @property
    def text(self) -> str:
        return "\n".join(self.sentences) + "\n"


def _date(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(2019, 2031), rng.randint(1, 12), rng.randint(1, 28)


def _fmt_date(d: tuple[int, int, int], style: int) -> str:
    y, m, day = d
    return [f"{day} {MONTHS[m - 1]} {y}", f"{MONTHS[m - 1]} {day}, {y}", f"{y}-{m:02d}-{day:02d}"][style]


def _amount(rng: random.Random) -> int:
    return rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 18, 24, 45]) * rng.choice([100, 250, 500, 1000])


def _person(rng: random.Random, avoid: set[str]) -> str:
    while True:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in avoid:
            avoid.add(name)
            return name


def make_doc(rng: random.Random, n_filler: int = 8) -> Doc:
    """One contract-like document with its labelled claims."""
    used: set[str] = set()
    landlord, tenant = _person(rng, used), _person(rng, used)
    company = rng.choice(COMPANIES)
    law, other_law = rng.sample(LAWS, 2)
    city, other_city = rng.sample(CITIES, 2)
    cur, cur_word = rng.choice(CURRENCIES)
    rent = _amount(rng)
    deposit = rent * rng.choice([2, 3])
    start = _date(rng)
    days = rng.choice(sorted(NUMBER_WORDS))
    months = rng.choice([6, 12, 18, 24, 36])
    wrong_day = (start[0], start[1], start[2] % 28 + 1)

    facts: list[tuple[str, list[tuple[str, str, bool]]]] = [
        (f"This agreement is made on {_fmt_date(start, 0)} between {landlord} (the Landlord) and {tenant} "
         f"(the Tenant).", [
            (f"The agreement was made on {_fmt_date(start, rng.choice([1, 2]))}.", "paraphrase", True),
            (f"The agreement was made on {_fmt_date(wrong_day, 1)}.", "wrong_date", True),
            (f"The landlord is {landlord}.", "short", False),
            (f"The landlord is {_person(rng, used)}.", "wrong_name", False),
            (f"The tenant under the agreement is {tenant}.", "paraphrase", False),
        ]),
        (f"The Tenant shall pay a monthly rent of {cur} {rent:,} on the first day of each month.", [
            (f"The tenant pays {rent} {cur_word} per month.", "paraphrase", True),
            (f"The monthly rent is {cur} {rent:,}.", "short", True),
            (f"The tenant pays {rent // 100} {cur_word} per month.", "wrong_number", True),
            (f"The tenant pays {rent + 50:,} {cur_word} per month.", "wrong_number", True),
        ]),
        (f"A security deposit of {cur} {deposit:,} is payable before the start date.", [
            (f"The deposit is {deposit:,} {cur_word}.", "paraphrase", True),
            (f"The deposit is {deposit * 10:,} {cur_word}.", "wrong_number", True),
        ]),
        (f"This agreement is governed by the laws of {law}.", [
            (f"The governing law is that of {law}.", "paraphrase", False),
            (f"The agreement is governed by the laws of {other_law}.", "wrong_name", False),
        ]),
        (f"Either party may terminate this agreement by giving {NUMBER_WORDS[days]} ({days}) days written "
         "notice.", [
            (f"Either party can end the agreement with {days} days notice in writing.", "paraphrase", True),
            (f"Either party can end the agreement with {days + 30} days notice.", "wrong_number", True),
        ]),
        (f"The initial term of this agreement is {months} months.", [
            (f"The agreement runs for an initial term of {months} months.", "paraphrase", True),
            (f"The agreement runs for an initial term of {months * 2} months.", "wrong_number", True),
        ]),
        (f"The services are provided by {company} from its offices in {city}.", [
            (f"{company} provides the services from {city}.", "paraphrase", False),
            (f"{company} provides the services from {other_city}.", "wrong_name", False),
        ]),
    ]
    sentences = rng.sample(FILLER, n_filler)
    claims: list[LabelledClaim] = []
    for sentence, cl in facts:
        idx = rng.randint(0, len(sentences))
        sentences.insert(idx, sentence)
        # indexes of earlier facts shift when a sentence goes before them
        claims = [LabelledClaim(c.text, c.support + 1 if c.support is not None and c.support >= idx else c.support,
                                c.kind, c.numeric) for c in claims]
        claims.append(LabelledClaim(sentence, idx, "verbatim", any(ch.isdigit() for ch in sentence)))
        claims += [LabelledClaim(t, idx if kind in ("paraphrase", "short") else None, kind, numeric)
                   for t, kind, numeric in cl]
    for template in rng.sample(ABSENT, 2):
        claims.append(LabelledClaim(template.format(city=rng.choice(CITIES), n=rng.randint(2, 9),
                                                    name=rng.choice(COMPANIES)), None, "absent", "{n}" in template))
    return Doc(sentences, claims)


def make_set(seed: int, n_docs: int) -> list[Doc]:
    rng = random.Random(seed)
    return [make_doc(rng) for _ in range(n_docs)]
