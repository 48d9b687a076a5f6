"""Text from users that is shown back to people: names and titles without invisible tricks."""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls (NUL included), and the bidirectional formatting characters: an override such as
# U+202E makes "invoice\u202etxt.exe" display as "invoiceexe.txt".
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """NFC, without control characters, bidi overrides, embeddings, isolates and marks, nor any other format
    character (Unicode category Cf: zero-width space, joiners, U+FEFF, soft hyphen, word joiner…): a name that
    shows the same as another must be the same name ("contract\u200b.pdf" is "contract.pdf")."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFC", text))
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()



def squash(text: str) -> str:
    """The form two texts are compared in when a quote is looked for: NFKC, case folded, without quote
    marks, whitespace runs as one space (citations and grounding match quotes in it)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"[\"“”«»'‘’`]", "", text)
    return re.sub(r"\s+", " ", text).strip()
