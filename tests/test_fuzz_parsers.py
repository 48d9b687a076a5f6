"""Parser fuzz: generated hostile PDFs and zips (tests/hostile_inputs.py) through the real parse sandbox.

Each upload must end, within the time limit, either as a parsed document or as a DocqaError (413, 415
or 422) whose sentence names the file; the same bytes parsed in this process must raise nothing but a
DocqaError either, so no parser exception hides behind the sandbox's catch-all. The seed is fixed for
CI (DOCQA_FUZZ_SEED, DOCQA_FUZZ_PARSER_CASES change it); `python -m bench.fuzz_parsers` is the long run.

The tests after the fuzz pin down what it found, one input each.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections import Counter

import pytest

from docqa.errors import InvalidDocument
from docqa.ingest import ParseLimits
from docqa.ingest.parse import parse_upload
from tests import builders
from tests.hostile_inputs import cases, raw_zip, run_case
from tests.test_hostile import one_page, raw_pdf, stream

SEED = int(os.environ.get("DOCQA_FUZZ_SEED", "20251128"))
N_CASES = int(os.environ.get("DOCQA_FUZZ_PARSER_CASES", "200"))
TIMEOUT_S = 5.0
MEMORY_BYTES = 1024**3
# OCR off: the generated PDFs' pages without text would each cost a Tesseract run (+35 s for 200 cases on 2
# cores), and this run is about the parsers and the limits. bench/fuzz_parsers.py keeps OCR on, and what OCR
# reads, and refuses, is tested in test_formats.py.
LIMITS = ParseLimits(ocr=False)


def test_generated_hostile_uploads_end_as_a_document_or_a_clear_refusal():
    outcomes = [run_case(case, LIMITS, timeout_s=TIMEOUT_S, memory_bytes=MEMORY_BYTES)
                for case in cases(SEED, N_CASES)]
    broken = [o for o in outcomes if o.problems]
    assert not broken, "\n\n".join(
        f"{o.label} {o.filename} ({o.size} bytes, seed {SEED}): {'; '.join(o.problems)}\n{o.trace[-2000:]}"
        for o in broken[:5]
    )
    counts = Counter(o.outcome for o in outcomes)
    errors = Counter(o.error for o in outcomes if o.error)
    slowest = max(outcomes, key=lambda o: o.elapsed_s)
    print(f"\n{len(outcomes)} cases: {dict(counts)}; {dict(errors)}; "
          f"slowest {slowest.label} {slowest.elapsed_s:.2f} s ({slowest.outcome})")
    # the generators reach both ends: bytes that still parse, and bytes refused with a sentence
    assert counts["parsed"] >= N_CASES // 20 and counts["refused"] >= N_CASES // 2
    assert {o.label.split(".")[0] for o in outcomes} >= {"pdf", "zip"}
    assert all(o.elapsed_s < TIMEOUT_S + 3 for o in outcomes)


# -- what the fuzz found ---------------------------------------------------------------------------------


def refused(data: bytes, name: str, *phrases: str) -> str:
    with pytest.raises(InvalidDocument) as caught:
        parse_upload(data, name, LIMITS)
    detail = caught.value.detail
    assert name in detail and all(p in detail for p in phrases), detail
    return detail


def test_zip_entry_without_a_name_is_refused():
    # zipfile.ZipInfo.is_dir() raised IndexError on an empty name
    data = raw_zip([(b"", b"x = 1\n", 6), (b"repo/ok.py", b"ok = 1\n", 7)])
    refused(data, "noname.zip", "entries has no name")


def test_zip_with_two_entries_of_one_name_is_refused():
    # both copies were read, as two sections claiming the same path and lines
    data = raw_zip([(b"repo/a.py", b"a = 1\n", 6), (b"repo/a.py", b"a = 2  # the other one\n", 23)])
    refused(data, "twice.zip", "more than one entry named 'repo/a.py'")


@pytest.mark.parametrize(("method", "body"), [(zipfile.ZIP_DEFLATED, b"\xff" * 64),
                                                (zipfile.ZIP_LZMA, b"\x00" * 40)])
def test_zip_member_that_does_not_decompress_is_refused(method, body):
    # zlib.error and lzma.LZMAError escaped the reader's damaged-entry handling
    data = raw_zip([(b"repo/a.py", body, 100)], method=method)
    refused(data, "garbled.zip", "has a damaged entry 'repo/a.py'")


def test_gitignore_with_patterns_git_cannot_use_keeps_the_ones_it_can():
    # pathspec raised GitIgnorePatternError / re.error for the whole upload
    gitignore = b"!\n\\\n[z-a]\n*.log\n"
    data = builders.make_zip({"repo/.gitignore": gitignore, "repo/a.py": b"a = 1\n", "repo/debug.log": b"x\n"})
    doc = parse_upload(data, "repo.zip", LIMITS)
    assert {s.path for s in doc.sections} == {".gitignore", "a.py"}
    assert doc.skipped == [{"path": "debug.log", "reason": "excluded by .gitignore"}]


def test_damaged_gitignore_is_reported_under_the_upload_name():
    data = bytearray(builders.make_zip({"repo/.gitignore": b"*.log\n" * 50, "repo/a.py": b"a = 1\n"}))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("repo/.gitignore")
    body = info.header_offset + 30 + len(info.filename)
    data[body:body + 8] = b"\xff" * 8
    refused(bytes(data), "ignored.zip", "has a damaged entry 'repo/.gitignore'")


def test_pdf_stream_needing_a_missing_decoder_is_refused_with_a_sentence():
    # pypdf's DependencyError (no jbig2dec) fell through to the sandbox's generic "could not be read"
    data = raw_pdf(one_page(stream(b"\x00\x01garbage", b"/Filter /JBIG2Decode")))
    refused(data, "jbig2.pdf", "uses an encoding docqa cannot decode")


def test_pdf_stream_with_an_unknown_filter_is_refused_or_read():
    data = raw_pdf(one_page(stream(zlib.compress(b"BT /F1 12 Tf (x) Tj ET"), b"/Filter /Foo")))
    try:
        parse_upload(data, "foo.pdf", LIMITS)
    except InvalidDocument as exc:
        assert "foo.pdf" in exc.detail


def test_zip64_sizes_that_lie_are_refused():
    body = b"print('zip64')\n"
    extra = struct.pack("<HHQQ", 1, 16, 1 << 40, 1 << 40)
    data = raw_zip([(b"a.py", body, len(body))], local_sizes=(0xFFFFFFFF, 0xFFFFFFFF),
                   central_sizes=(0xFFFFFFFF, 0xFFFFFFFF), extra=extra)
    refused(data, "zip64.zip")
