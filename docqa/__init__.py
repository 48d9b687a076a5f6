"""docqa: ask questions of whole documents with a local llama.cpp model."""

__version__ = "0.1.0"
