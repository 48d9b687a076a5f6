"""The parser fuzz (tests/hostile_inputs.py's byte mutations and its contract) over the formats of #27:
tarballs, e-mail, USLM XML, spreadsheets, OpenDocument text and RTF. Each mutated upload must end, within
the time limit, as a document or a DocqaError naming the file; the same bytes in this process raise nothing
else."""

from __future__ import annotations

import random
from collections import Counter

from docqa.ingest import ParseLimits
from tests.hostile_inputs import BYTE_MUTATIONS, Case, run_case
from tests.test_legal_xml import USLM
from tests.test_mail import full_message
from tests.test_odt_rtf import BODY, RTF_HEADINGS, odt
from tests.test_sheets import PRICES, ods, xlsx
from tests.test_tar import FILES, make_tar

SEED = 20261205
N_CASES = 110  # about 14 mutated files of each of the 8 seeds


def seeds() -> list[tuple[str, bytes]]:
    return [("repo.tar.gz", make_tar(FILES, "w:gz")), ("repo.tar", make_tar(FILES)), ("mail.eml", full_message()),
            ("bill.xml", USLM), ("prices.xlsx", xlsx({"Sheet1": PRICES})), ("register.ods", ods([["a", "b"]])),
            ("terms.odt", odt(BODY.format('<text:h text:outline-level="1">1 Terms</text:h><text:p>Pay <text:s '
                                          'text:c="3"/>in 30 days<text:note><text:note-citation>1</text:note-citation>'
                                          '<text:note-body><text:p>Net.</text:p></text:note-body></text:note>.'
                                          '</text:p>'))),
            ("terms.rtf", RTF_HEADINGS)]


def test_mutated_tarballs_mail_xml_and_sheets_end_as_a_document_or_a_clear_refusal():
    rng = random.Random(SEED)
    outcomes = []
    for i in range(N_CASES):
        name, data = rng.choice(seeds())
        for _ in range(rng.choice((1, 1, 2))):
            data = BYTE_MUTATIONS[rng.choice(list(BYTE_MUTATIONS))](rng, data) or b"\0"
        outcomes.append(run_case(Case(f"{name}.mutated", f"fuzz-{i}-{name}", data), ParseLimits(ocr=False),
                                 timeout_s=10.0, memory_bytes=1024**3))
    broken = [o for o in outcomes if o.problems]
    assert not broken, "\n\n".join(f"{o.filename}: {'; '.join(o.problems)}\n{o.trace[-1500:]}" for o in broken[:5])
    counts = Counter(o.outcome for o in outcomes)
    assert counts["parsed"] > 0 and counts["refused"] > 0, counts
