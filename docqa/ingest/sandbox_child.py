"""Preloaded into the parse forkserver: import the parsers and load the tokenizer once, so every
forked parse process starts with them ready."""

from docqa.ingest import parse  # noqa: F401
from docqa.tokens import encoding

encoding()
