"""OpenDocument text (.odt) and RTF, end to end over HTTP, on real files nobody on the team wrote (odfdo's
and striprtf's own test documents, tests/received.py): headings and paragraphs like Word, cited
`[doc.odt §Level 2 Title ¶1]`; tables a row a paragraph; tracked changes as the current text; notes
after their paragraph; a real Akoma Ntoso by-law cited by its sections; and hostile or damaged files
(encrypted, cut, a bomb, entity tricks, the wrong kind of OpenDocument, a spreadsheet's repeated runs)
refused with a sentence.
"""

from __future__ import annotations

import io
import zipfile

from docqa.engine.citations import extract_citations
from docqa.engine.sources import from_rows
from docqa.tokens import estimate_tokens
from tests import builders
from tests.received import CAPE_TOWN_EVENTS, mirrored
from tests.test_ingest import all_sections, assert_refused, created, row_counts
from tests.test_sheets import ods

ODFDO, STRIPRTF = "jdum+odfdo", "joshy+striprtf"


def sources(client, doc_id):
    service = client.app.state.documents
    return [from_rows(service.get(doc_id), service.all_sections(doc_id))]


# --- .odt ---------------------------------------------------------------------------------------


def test_real_odt_headings_and_paragraphs_are_cited_like_word(client):
    doc = created(client, "base_text.odt", mirrored(ODFDO, "tests/samples/base_text.odt"))
    assert doc["kind"] == "odt" and doc["parser"] == "lxml (ODF)"
    assert doc["media_type"] == "application/vnd.oasis.opendocument.text"
    sections = all_sections(client, doc["id"])
    by_heading = {s["heading"]: s for s in sections}
    first = by_heading["odfdo Test Case Document"]
    assert first["text"].split("\n") == ["This is the first paragraph.", "This is the second paragraph.",
                                         "This is a paragraph with a named style."]
    nested = by_heading["odfdo Test Case Document › Level 2 Title"]
    assert (nested["clause"], nested["para_start"], nested["para_end"]) == ("Level 2 Title", 1, 2)
    assert nested["text"].endswith("diacritical signs: éè")
    cites = extract_citations('It says "the last paragraph with diacritical signs" [base_text.odt §Level 2 Title ¶2]. '
                              'Not "the first paragraph" [base_text.odt §Level 2 Title ¶2].',
                              sources(client, doc["id"]))
    assert [(c.clause, c.para_start, c.verified) for c in cites] == [("Level 2 Title", 2, True),
                                                                     ("Level 2 Title", 2, False)]


def test_real_odt_tables_notes_and_tracked_changes(client):
    table = created(client, "table.odt", mirrored(ODFDO, "tests/samples/table.odt"))
    rows = {s["heading"]: s["text"].split("\n") for s in all_sections(client, table["id"])}
    assert rows["First table"][0] == "a | b | c | d" and rows["First table"][2] == "1 | 2 | 3 | 4"

    note = created(client, "note.odt", mirrored(ODFDO, "tests/samples/note.odt"))
    [section] = all_sections(client, note["id"])
    assert section["text"].split("\n") == ["Un paragraphe[^1] d'apparence[^i] banale.",
                                           "[^1]: C'est-à-dire l'élément « text:p ».",
                                           "[^i]: Les apparences sont trompeuses !"]

    tracked = created(client, "tracked_changes.odt", mirrored(ODFDO, "tests/samples/tracked_changes.odt"))
    [section] = all_sections(client, tracked["id"])
    assert section["text"] == "Bonjour los bonitos amigos ça va ?"  # "les", a deletion, is not current text
    assert tracked["meta"]["revisions"] is True and tracked["meta"]["tracked_changes"]["regions"] == 3


def odt(content: str, *, mimetype: bytes = b"application/vnd.oasis.opendocument.text",
        manifest: bytes = b"<manifest:manifest/>") -> bytes:
    return builders.make_zip({"mimetype": mimetype, "content.xml": content.encode(), "META-INF/manifest.xml": manifest})


BODY = ('<?xml version="1.0"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>{}</office:text>'
        '</office:body></office:document-content>')


def test_hostile_and_damaged_odt_is_refused_with_a_sentence(client, settings):
    before = row_counts(client)
    encrypted = odt("\x8f encrypted", manifest=b"<manifest:manifest><manifest:file-entry><manifest:encryption-data/>"
                                              b"</manifest:file-entry></manifest:manifest>")
    assert_refused(client, settings, "locked.odt", encrypted, 422, "locked.odt is password-protected",
                   "Save it without a password")
    good = odt(BODY.format('<text:h text:outline-level="1">1 Terms</text:h><text:p>Pay in 30 days.</text:p>'))
    assert_refused(client, settings, "cut.odt", good[:120], 422, "cut.odt")
    assert_refused(client, settings, "sheet.odt", ods([["a"]]), 422,
                   "sheet.odt is an OpenDocument file of another kind (application/vnd.oasis.opendocument."
                   "spreadsheet), not a text document")
    bomb = io.BytesIO(good)
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Pictures/zeros.bin", b"\0" * (8 * 1024 * 1024))
    assert_refused(client, settings, "bomb.odt", bomb.getvalue(), 422, "looks like an archive bomb")
    laughs = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>' + BODY.split("?>", 1)[1].format("<text:p>&c;</text:p>"))
    r = client.post("/api/documents", files={"file": ("laughs.odt", odt(laughs), "application/octet-stream")})
    assert r.status_code in (201, 422), r.text  # entities are never expanded: no text, or refused
    if r.status_code == 201:
        assert "aaaaaaaaaa" not in "".join(s["text"] for s in all_sections(client, r.json()["id"]))
        client.delete(f"/api/documents/{r.json()['id']}")
    xxe = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           + BODY.split("?>", 1)[1].format("<text:p>see &x; here</text:p>"))
    r = client.post("/api/documents", files={"file": ("xxe.odt", odt(xxe), "application/octet-stream")})
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        assert "root:" not in "".join(s["text"] for s in all_sections(client, r.json()["id"]))
        client.delete(f"/api/documents/{r.json()['id']}")
    assert_refused(client, settings, "empty.odt", odt(BODY.format("<text:p>  </text:p>")), 422,
                   "empty.odt is an OpenDocument text without any text")
    assert row_counts(client) == before  # nothing half-written


# --- .rtf ---------------------------------------------------------------------------------------


def test_real_rtf_paragraphs_and_tables(client):
    recipe = created(client, "nutridoc.rtf", mirrored(STRIPRTF, "tests/rtf/nutridoc.rtf"))
    assert recipe["kind"] == "rtf" and recipe["parser"] == "striprtf" and recipe["media_type"] == "application/rtf"
    [section] = all_sections(client, recipe["id"])
    lines = section["text"].split("\n")
    assert "900g sugar" in lines and section["heading"] is None and section["para_start"] == 1
    n = lines.index("900g sugar") + 1
    cites = extract_citations(f'"900g sugar" [nutridoc.rtf ¶{n}]', sources(client, recipe["id"]))
    assert [(c.para_start, c.verified) for c in cites] == [(n, True)]

    table = created(client, "pages_table_sample.rtf", mirrored(STRIPRTF, "tests/rtf/pages_table_sample.rtf"))
    [section] = all_sections(client, table["id"])
    assert section["text"].split("\n")[2:4] == ["Header A | Header B | Header C", "A1 | B1 | C1"]

    polish = created(client, "ansicpg1250.rtf", mirrored(STRIPRTF, "tests/rtf/ansicpg1250.rtf"))
    text = "\n".join(s["text"] for s in all_sections(client, polish["id"]))
    assert text.startswith("Proszę o zapoznanie się z poniższą klauzulą informacyjną.")  # code page 1250


# an RTF written here in the shape Word saves a heading paragraph (\s1 … \outlinelevel0) and a body one
RTF_HEADINGS = (rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Calibri;}}"
                rb"{\stylesheet{\s0 Normal;}{\s1\outlinelevel0 heading 1;}{\s2\outlinelevel1 heading 2;}}"
                rb"\pard\plain\s1\outlinelevel0 1 Terms\par"
                rb"\pard\plain\s2\outlinelevel1 1.1 Payment\par"
                rb"\pard\plain\s0 The buyer pays within 30 days.\par"
                rb"\pard\plain\s0 Late payments carry 2% interest \u8211? monthly.\par"
                rb"\pard\plain\s1\outlinelevel0 2 Delivery\par"
                rb"\pard\plain\s0 Goods ship from Lyon.\par}")


def test_rtf_headings_by_outline_level_are_clauses(client, settings):
    assert_refused(client, settings, "fake.rtf", b"just text, not RTF\n", 415, "fake.rtf is named like an RTF document")
    assert_refused(client, settings, "blank.rtf", rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\par\par}", 422,
                   "blank.rtf is an RTF document without any text")
    doc = created(client, "terms.rtf", RTF_HEADINGS)
    assert doc["meta"]["headings"] == 3
    sections = all_sections(client, doc["id"])
    assert [(s["heading"], s["clause"], s["text"]) for s in sections] == [
        ("1 Terms › 1.1 Payment", "1.1", "The buyer pays within 30 days.\nLate payments carry 2% interest – monthly."),
        ("2 Delivery", "2", "Goods ship from Lyon.")]
    cites = extract_citations('"Goods ship from Lyon" [terms.rtf §2 ¶1]', sources(client, doc["id"]))
    assert [(c.clause, c.verified) for c in cites] == [("2", True)]


# --- a real Akoma Ntoso act --------------------------------------------------------------------------


def test_real_akoma_ntoso_by_law_is_read_by_its_sections(client):
    repo, commit, path = CAPE_TOWN_EVENTS
    data = mirrored(repo, path, commit)
    doc = created(client, "cape-town-events-by-law.xml", data)
    assert doc["kind"] == "legal_xml" and doc["meta"]["xml"] == "akn"
    sections = all_sections(client, doc["id"])
    clauses = [s["clause"] for s in sections]
    assert {"1", "2", "3", "4", "4A", "4B", "5"} <= set(clauses)
    [s3] = [s for s in sections if s["clause"] == "3"]
    assert s3["heading"].endswith("3. Submission of applications for approval to hold or stage events")
    assert "(a) by a person who is at least 18 years old;" in s3["text"].split("\n")
    text = "\n".join(s["text"] for s in sections)
    assert "FRBRthis" not in text and "refersTo" not in text and "<" not in text
    assert estimate_tokens(text) < estimate_tokens(data.decode()) / 3  # markup and metadata dropped
    n = s3["text"].split("\n").index("(a) by a person who is at least 18 years old;") + s3["para_start"]
    cites = extract_citations(f'"at least 18 years old" [cape-town-events-by-law.xml §3 ¶{n}]',
                              sources(client, doc["id"]))
    assert [(c.clause, c.para_start, c.verified) for c in cites] == [("3", n, True)]


# --- .ods repeated runs ---------------------------------------------------------------------------


def test_ods_runs_of_repeated_values_are_refused_before_calamine_allocates(client, settings):
    runs = ('<table:table-row table:number-rows-repeated="100000"><table:table-cell '
            'table:number-columns-repeated="1000" office:value-type="float" office:value="1"/></table:table-row>')
    data = ods([["Name"]])
    zf = zipfile.ZipFile(io.BytesIO(data))
    files = {n: zf.read(n) for n in zf.namelist()}
    files["content.xml"] = files["content.xml"].replace(b"</table:table>", runs.encode() + b"</table:table>")
    bomb = builders.make_zip(files)
    assert len(bomb) < 2000
    assert_refused(client, settings, "runs.ods", bomb, 422,
                   "runs.ods has a sheet ('Register') that spans 100,001 rows × 1,000 columns",
                   "at most 2,000,000 cells")
    # LibreOffice's own ending, an empty run to the last row and column, takes no room
    tail = ('<table:table-row table:number-rows-repeated="1048575"><table:table-cell '
            'table:number-columns-repeated="16384"/></table:table-row>')
    files["content.xml"] = files["content.xml"].replace(runs.encode(), tail.encode())
    doc = created(client, "tail.ods", builders.make_zip(files))
    assert doc["meta"]["sheets"] == [{"name": "Register", "range": "A1:A1", "rows": 1, "columns": 1}]


def test_an_rtf_nesting_bomb_meets_the_parse_sandbox_time_limit(tmp_path):
    """A million nested groups: striprtf walks them (about 5 s a million on this machine); the sandbox's
    time limit stops it with a sentence and the service goes on."""
    from tests.test_ingest import app_client

    bomb = b"{\\rtf1 " + b"{" * 2_000_000 + b"x" + b"}" * 2_000_000 + b"}"
    with app_client(tmp_path, parse_timeout_s=0.5) as (c, s):
        assert_refused(c, s, "nested.rtf", bomb, 422, "nested.rtf took longer than 0.5 s to parse", "abandoned")
        s.parse_timeout_s = 60.0
        assert created(c, "terms.rtf", RTF_HEADINGS)["kind"] == "rtf"
