"""OCR of PDF pages without a text layer: pypdfium2 renders the page, Tesseract reads it.

Tesseract is Debian's `tesseract-ocr` (with the `eng` and `ara` language packs), driven through
pytesseract, which runs the `tesseract` program once per page. That program inherits the parse
sandbox's address-space limit, is given a per-page timeout of its own (so it cannot outlive a
parse that was abandoned), and runs with one OpenMP thread: on a shared machine, Tesseract's
threads cost more in contention than they gain.

A page is read at `ocr_dpi` (300, what Tesseract is tuned for), but never rendered larger than
`MAX_PIXELS`, so a hostile page size cannot ask for gigabytes of bitmap.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from docqa.errors import InvalidDocument, OcrUnavailable

MAX_PIXELS = 40_000_000  # an A3 page at 300 dpi is 17 M pixels
TESSERACT = "tesseract"
PREVIEW_DPI = 36  # enough to tell a blank page from one with marks on it
BLANK_CONTRAST = 32  # grey levels between a page's darkest and lightest pixel below which it is blank


@dataclass
class PageText:
    text: str
    confidence: float | None  # mean word confidence, 0-100; None when no word was found


@functools.cache
def tesseract_version() -> str | None:
    """The installed Tesseract's version, or None when the program is missing."""
    if shutil.which(TESSERACT) is None:
        return None
    import pytesseract

    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, OSError, subprocess.SubprocessError):
        return None


@functools.cache
def installed_languages() -> frozenset[str]:
    if tesseract_version() is None:
        return frozenset()
    import pytesseract

    return frozenset(pytesseract.get_languages(config=""))


def ocr_status(langs: str) -> str:
    """A sentence for the start-up log and health: whether OCR works here, and with which languages."""
    version = tesseract_version()
    if version is None:
        return ("OCR unavailable: the tesseract program is not installed (apt-get install tesseract-ocr "
                "tesseract-ocr-eng tesseract-ocr-ara); scanned pages will be refused")
    missing = sorted(set(langs.split("+")) - installed_languages()) if langs else []
    if missing:
        return f"OCR with tesseract {version}, but language pack(s) {', '.join(missing)} are missing"
    return f"OCR with tesseract {version} ({langs})"


def check_languages(langs: str) -> str:
    """`langs` ("eng+ara") when Tesseract has every one of them, else a 422 naming what is installed."""
    wanted = [lang.strip() for lang in langs.split("+") if lang.strip()]
    if not wanted or any(not lang.replace("_", "").isalnum() for lang in wanted):
        raise InvalidDocument(f"OCR languages must be Tesseract language codes joined by '+' (e.g. eng+ara), "
                              f"not {langs!r}.")
    if tesseract_version() is None:
        raise OcrUnavailable(
            "This server cannot run OCR: the tesseract program is not installed "
            "(apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-ara)."
        )
    have = installed_languages()
    missing = [lang for lang in wanted if lang not in have]
    if missing:
        raise InvalidDocument(
            f"OCR language {', '.join(missing)} is not installed on this server; it has "
            f"{', '.join(sorted(have - {'osd'}))}."
        )
    return "+".join(wanted)


def render(page: Any, dpi: int) -> Any:
    """A pypdfium2 page as a greyscale PIL image at `dpi`, capped at MAX_PIXELS."""
    width, height = page.get_size()  # PDF points, 1/72 inch
    scale = dpi / 72
    area = max(width * height, 1.0)
    if area * scale * scale > MAX_PIXELS:
        scale = (MAX_PIXELS / area) ** 0.5
    return page.render(scale=scale, grayscale=True).to_pil()


def is_blank(image: Any) -> bool:
    """A page of one flat shade (a blank separator page, a page whose drawing did not render): nothing
    for Tesseract to find, and not worth the second it takes to say so."""
    low, high = image.getextrema()
    return bool(high - low < BLANK_CONTRAST)


def read_image(image: Any, langs: str, timeout_s: float) -> PageText:
    """Tesseract's words, regrouped into its lines and paragraphs, and their mean confidence."""
    import pytesseract

    if is_blank(image):
        return PageText("", None)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # this process is a short-lived sandbox child: only tesseract reads it
    try:
        data = pytesseract.image_to_data(image, lang=langs, output_type=pytesseract.Output.DICT,
                                         timeout=max(timeout_s, 1.0))
    except RuntimeError as exc:  # pytesseract's timeout
        raise InvalidDocument(f"OCR of one page took longer than {timeout_s:g} s and was abandoned.") from exc
    except pytesseract.TesseractError as exc:
        raise InvalidDocument(f"OCR failed on a page ({exc.message or exc.status}).") from exc
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for i, word in enumerate(data["text"]):
        word = (word or "").strip()
        conf = float(data["conf"][i])
        if not word or conf < 0:
            continue
        confidences.append(conf)
        lines.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]), []).append(word)
    out: list[str] = []
    last_par: tuple[int, int] | None = None
    for (block, par, _), words in lines.items():  # dicts keep Tesseract's reading order
        if last_par is not None and (block, par) != last_par:
            out.append("")
        out.append(" ".join(words))
        last_par = (block, par)
    mean = round(sum(confidences) / len(confidences), 1) if confidences else None
    return PageText("\n".join(out), mean)
