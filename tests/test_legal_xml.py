"""Legislation in XML, end to end over HTTP: USLM and Akoma Ntoso read by their structure (sections cited
by their numbers, markup dropped), other XML kept as code, and hostile XML (XXE, billion laughs,
absurd nesting) refused or read without expanding anything. The documents are written here after
the shapes of GPO's USLM samples (github.com/usgpo/uslm) and the Akoma Ntoso 3.0 vocabulary.
"""

from __future__ import annotations

from docqa.engine.citations import extract_citations
from docqa.engine.sources import from_rows
from tests.test_ingest import all_sections, assert_refused, created

USLM = """<?xml version="1.0" encoding="UTF-8"?>
<bill xmlns="http://schemas.gpo.gov/xml/uslm" xmlns:dc="http://purl.org/dc/elements/1.1/">
<meta><dc:title>118 S 1325</dc:title><processedBy>GPO converter</processedBy></meta>
<main><longTitle><docTitle>A BILL</docTitle><officialTitle>To establish a partnership.</officialTitle></longTitle>
<section identifier="/us/bill/118/s/1325/s1"><num value="1">SECTION 1. </num><heading>SHORT TITLE.</heading>
<content>This Act may be cited as the <shortTitle>Partnership Act of 2023</shortTitle>.</content></section>
<section><num value="2">SEC. 2. </num><heading>TABLE OF CONTENTS.</heading><toc><referenceItem>
<designator>Sec. 1.</designator><label>Short title.</label></referenceItem></toc></section>
<title><num value="I">TITLE I—</num><heading>SECURITY</heading>
<section><num value="3">SEC. 3. </num><heading>PROMOTING SECURITY.</heading>
<subsection><num value="a">(a) </num><heading>Sense of Congress.—</heading><content>Congress should
strengthen <i>security</i> cooperation.</content></subsection>
<subsection><num value="b">(b) </num><heading>Collaborative Efforts.—</heading><chapeau>The Secretary should
support partners that—</chapeau>
<paragraph><num value="1">(1) </num><content>enhance institutional capacity;</content></paragraph>
<paragraph><num value="2">(2) </num><chapeau>provide technical assistance to—</chapeau>
<subparagraph><num value="A">(A) </num><content>disrupt illicit narcotics trafficking; and</content></subparagraph>
</paragraph></subsection></section></title></main></bill>""".encode()

AKN = b"""<?xml version="1.0" encoding="utf-8"?>
<akomaNtoso xmlns="http://docs.oasis-open.org/legaldocml/ns/akn/3.0"><act>
<meta><identification source="#x"><FRBRWork><FRBRname value="Data Act 2024"/></FRBRWork></identification></meta>
<preface><p>The Data Act 2024</p></preface>
<body><chapter eId="chp_1"><num>1</num><heading>Preliminary</heading>
<section eId="sec_1"><num>1.</num><heading>Definitions</heading>
<subsection eId="sec_1__subsec_1"><num>(1)</num>
<content><p>In this Act, <term>data</term> means any record.</p></content></subsection>
<subsection eId="sec_1__subsec_2"><num>(2)</num>
<content><p>A controller keeps records for seven years.</p></content></subsection>
</section></chapter></body></act></akomaNtoso>"""


def test_uslm_bill_is_read_by_its_sections(client):
    doc = created(client, "bill.xml", USLM)
    assert doc["kind"] == "legal_xml" and doc["parser"] == "lxml (USLM)" and doc["meta"]["xml"] == "uslm"
    assert doc["meta"]["title"] == "To establish a partnership."
    sections = all_sections(client, doc["id"])
    by_clause = {s["clause"]: s for s in sections}
    assert by_clause["1"]["text"] == "This Act may be cited as the Partnership Act of 2023."
    assert by_clause["1"]["heading"] == "SECTION 1. SHORT TITLE."
    assert "Short title." not in "\n".join(s["text"] for s in sections)  # the TOC is dropped
    assert "processedBy" not in "".join(s["text"] for s in sections) and "GPO converter" not in doc["meta"]["title"]
    assert by_clause["3(a)"]["heading"] == "TITLE I— SECURITY › SEC. 3. PROMOTING SECURITY. › (a) Sense of Congress.—"
    assert by_clause["3(a)"]["text"] == "Congress should strengthen security cooperation."
    assert by_clause["3(b)"]["heading"].endswith("SEC. 3. PROMOTING SECURITY. › (b) Collaborative Efforts.—")
    assert by_clause["3(b)"]["text"].split("\n") == [
        "The Secretary should support partners that—", "(1) enhance institutional capacity;",
        "(2) provide technical assistance to—", "(A) disrupt illicit narcotics trafficking; and"]
    assert "<" not in "".join(s["text"] for s in sections)
    service = client.app.state.documents
    sources = [from_rows(service.get(doc["id"]), service.all_sections(doc["id"]))]
    cites = extract_citations('It names [bill.xml §3(b) ¶4] "disrupt illicit narcotics trafficking". '
                              'Wrong [bill.xml §3(a) ¶1] "narcotics".', sources)
    assert [(c.clause, c.para_start, c.verified) for c in cites] == [("3(b)", 4, True), ("3(a)", 1, False)]


def test_akoma_ntoso_act_is_read_by_its_sections(client):
    doc = created(client, "act.akn.xml", AKN)
    assert doc["parser"] == "lxml (Akoma Ntoso)" and doc["meta"]["title"] == "Data Act 2024"
    sections = all_sections(client, doc["id"])
    by_clause = {s["clause"]: s["text"] for s in sections}
    assert by_clause["1"] == "(1) In this Act, data means any record.\n(2) A controller keeps records for seven years."
    assert sections[-1]["heading"] == "1 Preliminary › 1. Definitions"


def test_other_xml_stays_code(client):
    doc = created(client, "pom.xml", b"<project xmlns='http://maven.apache.org/POM/4.0.0'>\n<a>1</a>\n</project>\n")
    assert doc["kind"] == "code"
    assert all_sections(client, doc["id"])[0]["text"].startswith("<project")


def test_xxe_is_never_fetched(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE bill [<!ENTITY x SYSTEM "file://{secret}">]>'
           '<bill xmlns="http://schemas.gpo.gov/xml/uslm"><main><section><num value="1">SEC. 1.</num>'
           '<heading>T</heading><content>Leak: &x; end.</content></section></main></bill>').encode()
    doc = created(client, "xxe.xml", xxe)
    text = "".join(s["text"] for s in all_sections(client, doc["id"]))
    assert "TOPSECRET" not in text and "Leak:" in text


def test_billion_laughs_is_refused(client, settings):
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
                        for i in range(1, 10))
              + ']><bill xmlns="http://schemas.gpo.gov/xml/uslm"><main><section><num value="1">SEC. 1.</num>'
              '<heading>T</heading><content>a &lol9; b</content></section></main></bill>').encode()
    assert_refused(client, settings, "laughs.xml", laughs, 422, "laughs.xml is unsafe", "billion laughs")


def test_broken_and_absurdly_nested_legal_xml_is_refused(client, settings):
    assert_refused(client, settings, "cut.xml", USLM[: len(USLM) // 2], 422, "cut.xml is not well-formed XML")
    deep = (b'<bill xmlns="http://schemas.gpo.gov/xml/uslm">' + b"<level>" * 300_000 + b"x"
            + b"</level>" * 300_000 + b"</bill>")
    assert_refused(client, settings, "deep.xml", deep, 422, "deep.xml")
