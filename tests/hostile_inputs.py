"""Generated hostile uploads for the parser fuzz (tests/test_fuzz_parsers.py, bench/fuzz_parsers.py).

`cases(seed, n)` yields `Case`s built from a seeded `random.Random`: valid PDFs and zips mutated byte-wise
(bit flips, truncations, splices, duplicated or deleted runs, random bytes after a valid header) and
structurally (nested FlateDecode bombs, absurd /Length, circular xrefs, page-tree and XObject loops,
broken filters and fonts; duplicated, overlapping and nested zip entries, absurd sizes in local and
central headers, lying zip64 fields, broken end records, odd compression methods and .gitignore
files). `run_case` feeds one through the real sandbox (a separate process with a wall-clock and an
address-space limit) and, when that ended without hitting a limit, through `parse_upload` in this
process too, so that an exception the sandbox would have papered over is seen for what it is.
"""

from __future__ import annotations

import io
import random
import struct
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

from docqa.errors import DocqaError, ParseLimitExceeded
from docqa.ingest import ParseLimits
from docqa.ingest.parse import parse_upload
from docqa.ingest.sandbox import parse_in_sandbox
from tests import builders
from tests.test_hostile import HOSTILE, PAGE_TREE, one_page, raw_pdf, stream

TEXT_OPS = b"BT /F1 12 Tf 72 720 Td (Fuzzed page text for docqa) Tj ET"
REFUSAL_STATUSES = {413, 415, 422}


@dataclass
class Case:
    label: str  # which generator, e.g. "pdf.flip" or "zip.sizes"
    filename: str
    data: bytes


@dataclass
class Outcome:
    label: str
    filename: str
    size: int
    outcome: str  # parsed | refused | limit | unexpected
    error: str = ""  # the DocqaError class, or the unexpected exception's type
    status: int | None = None
    detail: str = ""
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)  # what broke the contract, empty when all is well
    trace: str = ""


# -- seeds -------------------------------------------------------------------------------------------


@cache
def pdf_seeds() -> tuple[bytes, ...]:
    return (
        builders.make_pdf(["Clause 1: the supplier delivers monthly.", "Clause 2: fees are due in 30 days."]),
        builders.make_encrypted_pdf(["Owner-restricted page."], user_password=""),
        builders.make_many_page_pdf(3, "Shared content stream page."),
        raw_pdf(one_page(stream(TEXT_OPS))),
        raw_pdf(one_page(stream(zlib.compress(TEXT_OPS), b"/Filter /FlateDecode"))),
        *(HOSTILE[name]() for name in ("huge_declared_length", "circular_xref", "page_tree_loop")),
    )


@cache
def flate_bomb_pdf() -> bytes:
    return HOSTILE["flate_bomb"]()


@cache
def zip_seeds() -> tuple[bytes, ...]:
    code = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40)).encode()
    return (
        builders.make_zip({"repo/.gitignore": b"*.log\n", "repo/README.md": b"# Demo\n\nHello.\n",
                           "repo/src/app.py": code, "repo/debug.log": b"x\n"}, dirs=["repo/", "repo/src/"]),
        builders.make_zip({"a.py": b"print('a')\n", "b.txt": b"bee\n"}, compression=zipfile.ZIP_STORED),
        builders.zip_symlink(),
        builders.zip_encrypted_member(),
        builders.zip_lying_size(),
        builders.zip_overlapping(),
        builders.zip_path_traversal(),
    )


# -- byte-level mutations ------------------------------------------------------------------------------


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 8, 32, 128))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def overwrite(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    i = rng.randrange(len(out))
    n = rng.choice((1, 4, 16, 256))
    out[i:i + n] = rng.randbytes(n)
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    cut = data[:rng.randrange(1, len(data))] if len(data) > 1 else data
    return cut + b"\n%%EOF\n" if rng.random() < 0.5 and data.startswith(b"%PDF") else cut


def splice(rng: random.Random, data: bytes, other: bytes) -> bytes:
    return data[:rng.randrange(len(data))] + other[rng.randrange(len(other)):]


def duplicate_run(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    j = min(len(data), i + rng.choice((8, 64, 512, 4096)))
    at = rng.randrange(len(data))
    return data[:at] + data[i:j] * rng.choice((1, 2, 10)) + data[at:]


def delete_run(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.choice((1, 16, 256, 2048)):]


def after_header(rng: random.Random, header: bytes, tail: bytes = b"") -> bytes:
    return header + rng.randbytes(rng.choice((0, 10, 200, 5000))) + tail


BYTE_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flip": flip_bits, "overwrite": overwrite, "truncate": truncate, "dup": duplicate_run, "delete": delete_run,
}


# -- structural PDFs -----------------------------------------------------------------------------------


@cache
def _deflated(fill: bytes, mib: int, depth: int) -> bytes:
    out = zlib.compressobj(9)
    payload = b"".join(out.compress(fill * (1 << 20)) for _ in range(mib)) + out.flush()
    for _ in range(depth - 1):
        payload = zlib.compress(payload, 9)
    return payload


def nested_flate(rng: random.Random) -> bytes:
    """Zeros or spaces deflated 1–4 times: up to 128 MB (past pypdf's 75 MB guard) from a few kilobytes;
    sometimes the test suite's 200 MB double-deflated bomb."""
    if rng.random() < 0.1:
        return flate_bomb_pdf()
    depth = rng.randint(1, 4)
    payload = _deflated(rng.choice((b"\0", b" ")), rng.choice((1, 4, 16, 64, 128)), depth)
    filters = b"[" + b" ".join([b"/FlateDecode"] * depth) + b"]"
    return raw_pdf(one_page(stream(payload, b"/Filter " + filters)))


def absurd_length(rng: random.Random) -> bytes:
    length = rng.choice((b"0", b"-1", b"10000000000000000000", b"9 0 R", b"4 0 R", b"/Name", b"1.5e300", b"()"))
    body = b"<< /Length " + length + b" >>\nstream\n" + TEXT_OPS + b"\nendstream"
    return raw_pdf(one_page(body))


def xref_loop(rng: random.Random) -> bytes:
    pdf = raw_pdf(one_page(stream(TEXT_OPS)))
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    # a second trailer whose /Prev points back at the first, which points at the second
    extra = (b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size 6 /Root 1 0 R /Prev %d >>\n" % xref)
    second = len(pdf)
    patched = pdf.replace(b"/Root 1 0 R >>", b"/Root 1 0 R /Prev %d >>" % second, 1)
    offset = rng.choice((second, xref, 0, len(patched) + 10**9))
    return patched + extra + b"startxref\n%d\n%%%%EOF\n" % offset


def page_tree(rng: random.Random) -> bytes:
    variants = [
        [PAGE_TREE, b"<< /Type /Pages /Kids [2 0 R 2 0 R] /Count 2 >>"],
        [PAGE_TREE, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"],
        [PAGE_TREE, b"<< /Type /Pages /Kids [1 0 R] /Count 1 >>"],
        [PAGE_TREE, b"<< /Type /Pages /Kids [3 0 R] /Count 1000000000000 >>",
         b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"],
        [PAGE_TREE, b"<< /Type /Pages /Kids 3 0 R /Count -5 >>", b"[2 0 R]"],
        [b"<< /Type /Catalog /Pages 1 0 R >>"],
        [b"<< /Type /Catalog >>"],
        [b"42"],
    ]
    return raw_pdf(rng.choice(variants))


def xobject_loop(rng: random.Random) -> bytes:
    """A page whose Form XObject draws itself (directly or through a second one)."""
    form = stream(b"/X0 Do " + TEXT_OPS, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                  b"/Resources << /XObject << /X0 %d 0 R >> /Font << /F1 5 0 R >> >>"
                  % rng.choice((6, 7)))
    other = stream(b"/X0 Do", b"/Type /XObject /Subtype /Form /BBox [0 0 1 1] "
                   b"/Resources << /XObject << /X0 6 0 R >> >>")
    objects = [
        PAGE_TREE,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /X0 6 0 R >> >> >>",
        stream(b"/X0 Do " + TEXT_OPS),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        form,
        other,
    ]
    return raw_pdf(objects)


def broken_filter(rng: random.Random) -> bytes:
    name, params = rng.choice((
        (b"/ASCIIHexDecode", b""), (b"/ASCII85Decode", b""), (b"/LZWDecode", b""), (b"/RunLengthDecode", b""),
        (b"/CCITTFaxDecode", b""), (b"/DCTDecode", b""), (b"/JBIG2Decode", b""), (b"/Foo", b""),
        (b"/FlateDecode", b"/DecodeParms << /Predictor 12 /Columns 0 >>"),
        (b"/FlateDecode", b"/DecodeParms << /Predictor 15 /Columns 100000000 /Colors 255 >>"),
        (b"/LZWDecode", b"/DecodeParms << /EarlyChange 7 >>"),
        (b"[/ASCII85Decode /FlateDecode /Foo]", b""),
    ))
    data = rng.choice((rng.randbytes(rng.choice((1, 50, 3000))), zlib.compress(TEXT_OPS), b"", TEXT_OPS))
    return raw_pdf(one_page(stream(data, b"/Filter " + name + b" " + params)))


def broken_font(rng: random.Random) -> bytes:
    to_unicode = stream(rng.choice((
        rng.randbytes(200),
        b"/CIDInit /ProcSet findresource begin 1 begincmap 1 beginbfrange <00> <FFFF> <0000> endbfrange endcmap",
        b"1 beginbfchar <01> <D800> endbfchar 99999999 beginbfrange <0000> <FFFFFFFF> [<41>] endbfrange",
        b"begincodespacerange <> <FF> endcodespacerange",
    )))
    font = rng.choice((
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H /DescendantFonts [5 0 R] >>",
        b"<< /Type /Font /Subtype /Type1 /Encoding << /Differences [0 /a 1 /b -5 /c 99999999999 /d] >> "
        b"/FirstChar 0 /LastChar 99999999 /Widths [1 2 3] >>",
        b"<< /Type /Font /Subtype /Type3 /FontMatrix [0 0 0 0 0 0] /CharProcs 5 0 R /Encoding 5 0 R >>",
        b"(not a font)",
    ))
    content = rng.choice((TEXT_OPS, b"BT /F1 1e999 Tf (x) Tj [(a) -1e40 (b)] TJ ET", b"BT /F1 12 Tf <0001FFFE> Tj ET"))
    return raw_pdf(one_page(stream(content))[:4] + [font, to_unicode])


def junk_content(rng: random.Random) -> bytes:
    words = [b"BT", b"ET", b"Tf", b"Tj", b"TJ", b"Td", b"TD", b"Tm", b"T*", b"'", b'"', b"q", b"Q", b"cm", b"Do",
             b"BI", b"ID", b"EI", b"/F1", b"/X9", b"12", b"-3.5", b"1e308", b"(text)", b"<00ff>", b"[", b"]",
             b"<<", b">>", b"(unbalanced", b"\\", b"%comment"]
    ops = b" ".join(rng.choice(words) for _ in range(rng.choice((10, 200, 5000))))
    return raw_pdf(one_page(stream(ops)))


def bad_xref(rng: random.Random) -> bytes:
    pdf = bytearray(raw_pdf(one_page(stream(TEXT_OPS))))
    start = pdf.rindex(b"xref\n")
    for _ in range(rng.randint(1, 6)):  # corrupt the object offsets
        i = start + rng.randrange(len(pdf) - start)
        pdf[i] = rng.choice(b"0123456789 nf\n")
    if rng.random() < 0.3:
        pdf = pdf.replace(b"startxref\n", b"startxref\n9", 1)
    return bytes(pdf)


def random_after_pdf_header(rng: random.Random) -> bytes:
    return after_header(rng, b"%PDF-1." + str(rng.randrange(10)).encode() + b"\n", b"\n%%EOF\n")


STRUCTURAL_PDF: dict[str, Callable[[random.Random], bytes]] = {
    "nested_flate": nested_flate, "length": absurd_length, "xref_loop": xref_loop, "page_tree": page_tree,
    "xobject_loop": xobject_loop, "filter": broken_filter, "font": broken_font, "content": junk_content,
    "xref": bad_xref, "header_junk": random_after_pdf_header,
}


# -- structural zips -----------------------------------------------------------------------------------

LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory record
END = struct.Struct("<4s4H2LH")  # end of central directory


def raw_zip(entries: list[tuple[bytes, bytes, int]], *, method: int = 0, flags: int = 0,
            local_sizes: tuple[int, int] | None = None, central_sizes: tuple[int, int] | None = None,
            central_offsets: list[int] | None = None, extra: bytes = b"", end_fields: tuple[int, ...] | None = None,
            comment: bytes = b"") -> bytes:
    """A zip from (name, stored bytes, uncompressed size) triples, each header field overridable."""
    out = io.BytesIO()
    offsets = []
    for name, body, size in entries:
        offsets.append(out.tell())
        csize, usize = local_sizes or (len(body), size)
        out.write(LOCAL.pack(b"PK\x03\x04", 20, 0, flags, method, 0, 0, zlib.crc32(body), csize, usize,
                             len(name), len(extra)) + name + extra + body)
    start = out.tell()
    for i, (name, body, size) in enumerate(entries):
        csize, usize = central_sizes or (len(body), size)
        offset = central_offsets[i] if central_offsets else offsets[i]
        out.write(CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, flags, method, 0, 0, zlib.crc32(body), csize, usize,
                               len(name), len(extra), 0, 0, 0, 0o100644 << 16, offset) + name + extra)
    size = out.tell() - start
    n = len(entries)
    fields = end_fields or (0, 0, n, n, size, start, len(comment))
    out.write(END.pack(b"PK\x05\x06", *fields) + comment)
    return out.getvalue()


def zip_sizes(rng: random.Random) -> bytes:
    body = b"print('hi')\n" * rng.choice((1, 50))
    absurd = (0, 1, 100, 0x7FFFFFFF, 0xFFFFFFFE, rng.randrange(1 << 32))
    local = (rng.choice(absurd), rng.choice(absurd)) if rng.random() < 0.7 else None
    central = (rng.choice(absurd), rng.choice(absurd)) if rng.random() < 0.7 else None
    return raw_zip([(b"repo/a.py", body, len(body)), (b"repo/b.py", b"x = 1\n", 6)],
                   local_sizes=local, central_sizes=central)


def zip64_lies(rng: random.Random) -> bytes:
    """0xFFFFFFFF sizes with a zip64 extra field declaring absurd (or missing) real sizes."""
    body = b"print('zip64')\n"
    values = [rng.choice((0, len(body), 1 << 40, (1 << 64) - 1)) for _ in range(rng.randint(0, 3))]
    extra = struct.pack("<HH", 1, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)
    return raw_zip([(b"a.py", body, len(body))], local_sizes=(0xFFFFFFFF, 0xFFFFFFFF),
                   central_sizes=(0xFFFFFFFF, 0xFFFFFFFF), extra=extra)


def zip_duplicates(rng: random.Random) -> bytes:
    body = b"x = 1\n"
    entries = [(b"repo/a.py", body, len(body))] * rng.randint(2, 5) + [(b"repo/b.py", b"y = 2\n", 6)]
    if rng.random() < 0.5:  # the same bytes under several names (a shared local header)
        return raw_zip(entries, central_offsets=[0] * len(entries))
    return raw_zip(entries)


def zip_overlap(rng: random.Random) -> bytes:
    """Central records pointing into the middle of another entry, or at the directory itself."""
    first = b"A" * 200
    entries = [(b"repo/a.txt", first, len(first)), (b"repo/b.txt", b"bee\n", 4)]
    data = raw_zip(entries)
    start = END.unpack(data[-END.size:])[6]
    return raw_zip(entries, central_offsets=[0, rng.choice((5, 30 + 10 + 50, start, start + 4, len(data) + 99))])


def zip_nested(rng: random.Random) -> bytes:
    inner = builders.make_zip({"inner.py": b"print('inner')\n"})
    for _ in range(rng.randint(0, 3)):
        inner = builders.make_zip({"nested.zip": inner, "x.py": b"x = 1\n"})
    name = rng.choice(("repo/nested.zip", "repo/nested.py", "repo/README.md"))
    return builders.make_zip({name: inner, "repo/ok.py": b"ok = True\n"})


def zip_end_record(rng: random.Random) -> bytes:
    entries = [(b"a.py", b"a = 1\n", 6)]
    good = raw_zip(entries)
    start = END.unpack(good[-END.size:])[6]
    size = len(good) - END.size - start
    fields = rng.choice((
        (0, 0, 0xFFFF, 0xFFFF, size, start, 0),
        (0, 0, 1, 1, 0xFFFFFFFF, start, 0),
        (0, 0, 1, 1, size, 0xFFFFFFF0, 0),
        (0, 0, 1, 1, size, start, 0xFFFF),
        (0xFFFF, 0xFFFF, 1, 1, size, start, 0),
        (0, 0, 0, 0, 0, 0, 0),
    ))
    return raw_zip(entries, end_fields=fields, comment=rng.randbytes(rng.choice((0, 10))))


def zip_methods(rng: random.Random) -> bytes:
    import bz2
    import lzma

    text = b"print('compressed')\n" * 20
    method, body = rng.choice((
        (8, rng.randbytes(64)),  # deflate, garbage
        (12, bz2.compress(text)),  # bzip2, honest
        (12, bz2.compress(b"\0" * (8 << 20))),  # bzip2 bomb: sizes below say small
        (14, rng.randbytes(40)),  # lzma, garbage
        (14, lzma.compress(text, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1}])),  # no header
        (99, rng.randbytes(40)),  # AES (WinZip), unsupported
        (rng.randrange(256), rng.randbytes(40)),
    ))
    return raw_zip([(b"repo/a.py", body, rng.choice((len(text), 10, 8 << 20)))], method=method)


def zip_names(rng: random.Random) -> bytes:
    name = rng.choice((
        b"", b"/", b"repo/\x00evil.py", b"a" * 5000 + b".py", b"\xff\xfe\xfd.py", b"repo\\..\\..\\x.py",
        b"repo/dir/", b"./././a.py", b"repo//a.py", b"C:", b"..", b"repo/.gitignore",
    ))
    flags = rng.choice((0, 0x800))  # bit 11: UTF-8 names
    return raw_zip([(name, b"name = 1\n", 9), (b"repo/ok.py", b"ok = 1\n", 7)], flags=flags)


def zip_gitignore(rng: random.Random) -> bytes:
    lines = rng.choice((
        [b"!", b"\\", b"[", b"**/**/**/**/**/**/**/**/**/**/a", b"***", b"[z-a]", b"/", b"!!!", b"\\\\\\"],
        [rng.randbytes(rng.randint(1, 30)) for _ in range(20)],
        [b"*" * 2000],
        [b"[" * 500 + b"a"],
    ))
    return builders.make_zip({"repo/.gitignore": b"\n".join(lines), "repo/a.py": b"a = 1\n"})


def random_after_zip_header(rng: random.Random) -> bytes:
    return after_header(rng, rng.choice((b"PK\x03\x04", b"PK\x05\x06")))


STRUCTURAL_ZIP: dict[str, Callable[[random.Random], bytes]] = {
    "sizes": zip_sizes, "zip64": zip64_lies, "duplicates": zip_duplicates, "overlap": zip_overlap,
    "nested": zip_nested, "end_record": zip_end_record, "methods": zip_methods, "names": zip_names,
    "gitignore": zip_gitignore, "header_junk": random_after_zip_header,
}


# -- the case stream -----------------------------------------------------------------------------------


def _mutated(rng: random.Random, seeds: tuple[bytes, ...]) -> tuple[str, bytes]:
    data = rng.choice(seeds)
    name = rng.choice((*BYTE_MUTATIONS, "splice"))
    for _ in range(rng.choice((1, 1, 2, 3))):
        data = splice(rng, data, rng.choice(seeds)) if name == "splice" else BYTE_MUTATIONS[name](rng, data)
        if not data:
            data = b"\0"
    return name, data


def make_case(rng: random.Random, index: int) -> Case:
    roll = rng.random()
    if roll < 0.30:
        name, data = _mutated(rng, pdf_seeds())
        return Case(f"pdf.{name}", f"fuzz-{index}.pdf", data)
    if roll < 0.55:
        name = rng.choice(list(STRUCTURAL_PDF))
        return Case(f"pdf.{name}", f"fuzz-{index}.pdf", STRUCTURAL_PDF[name](rng))
    if roll < 0.72:
        name, data = _mutated(rng, zip_seeds())
        return Case(f"zip.{name}", f"fuzz-{index}.zip", data)
    if roll < 0.97:
        name = rng.choice(list(STRUCTURAL_ZIP))
        return Case(f"zip.{name}", f"fuzz-{index}.zip", STRUCTURAL_ZIP[name](rng))
    # a name that contradicts the content, or content with no name to go by
    data = rng.choice(pdf_seeds() + zip_seeds())
    return Case("mismatch", f"fuzz-{index}{rng.choice(('.txt', '.py', '.zip', '.pdf', '', '.docx'))}", data)


def cases(seed: int, n: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for index in range(n):
        yield make_case(rng, index)


def case_at(seed: int, index: int) -> Case:
    """Case `index` of `cases(seed, …)`, to reproduce one a fuzz run reported."""
    *_, case = cases(seed, index + 1)
    return case


# -- running one ---------------------------------------------------------------------------------------


def run_case(case: Case, limits: ParseLimits, *, timeout_s: float, memory_bytes: int) -> Outcome:
    out = Outcome(case.label, case.filename, len(case.data), outcome="parsed")
    started = time.monotonic()
    try:
        parse_in_sandbox(case.data, case.filename, limits, timeout_s=timeout_s, memory_bytes=memory_bytes)
    except ParseLimitExceeded as exc:
        out.outcome, out.error, out.status, out.detail = "limit", type(exc).__name__, exc.status_code, exc.detail
    except DocqaError as exc:
        out.outcome, out.error, out.status, out.detail = "refused", type(exc).__name__, exc.status_code, exc.detail
    except Exception as exc:  # noqa: BLE001 - the sandbox itself failed: a finding
        out.outcome, out.error, out.detail = "unexpected", type(exc).__name__, str(exc)
        out.trace = traceback.format_exc()
    out.elapsed_s = round(time.monotonic() - started, 3)

    if out.elapsed_s > timeout_s + 3:
        out.problems.append(f"took {out.elapsed_s:.1f} s, past the {timeout_s:g} s limit")
    if out.outcome == "unexpected":
        out.problems.append(f"the sandbox raised {out.error}")
    if out.outcome in ("refused", "limit"):
        if out.status not in REFUSAL_STATUSES:
            out.problems.append(f"status {out.status} is not 413/415/422")
        if case.filename not in out.detail:
            out.problems.append("the sentence does not name the file")
    if out.outcome != "limit":
        # The same bytes in this process: a parser exception that is not a DocqaError is a bug even though
        # the sandbox turns it into a 422.
        try:
            parse_upload(case.data, case.filename, limits)
            direct = "parsed"
        except DocqaError as exc:
            direct = type(exc).__name__
        except (MemoryError, RecursionError):
            direct = out.error  # what the sandbox's limits are for
        except Exception as exc:  # noqa: BLE001
            direct = type(exc).__name__
            out.trace = traceback.format_exc()
            out.problems.append(f"parse_upload raised {direct}: {exc}"[:300])
        if not out.trace and direct != (out.error or "parsed"):
            out.problems.append(f"the sandbox said {out.error or 'parsed'}, parse_upload {direct}")
    return out
