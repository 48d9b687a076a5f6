"""Which models docqa can answer with, described from their GGUF headers.

The embedded default (SmolLM2-135M-Instruct, fetched by `docqa fetch-model`) needs no
configuration; `DOCQA_MODEL` replaces it with any GGUF by path and `DOCQA_MODELS` adds named ones:
each NAME=TARGET goes to the first registered backend kind that claims its target (backends.py: a
URL is a server, anything else a GGUF path).
A model that is missing or not a GGUF is still listed, with its error, so `/api/models` and the
start-up log say what is wrong instead of the service failing.

The file is also watched while the service runs: models are loaded lazily (the first question
creates the context), so a GGUF deleted, truncated or swapped after start must not reach
llama.cpp (a missing file makes it fail obscurely; a file truncated under a memory map can kill
the process with SIGBUS). `ModelSpec.problem()` compares the file's size and identity with what
was read at start — a `stat()` per call, the header re-hashed only when the inode or mtime
changed — and every use of the model (`require()`, `vocab()`, the runtime before it creates a
context) refuses with a 503 sentence while the file is not what was described (local.py's
`ModelSpec`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from docqa.engine.backend import Spec
from docqa.engine.backends import kind_of
from docqa.engine.local import ModelSpec, load_spec
from docqa.engine.sampling import PRESETS
from docqa.errors import ModelUnavailable, NotFound
from docqa.fetch import SMOLLM2, embedded_model_path
from docqa.settings import Settings

log = logging.getLogger(__name__)

# re-exported: where callers found them before the backends had modules of their own
__all__ = ["PRESETS", "ModelRegistry", "ModelSpec", "ModelUnavailable", "Spec", "load_spec"]


class ModelRegistry:
    """The models by name: the default (embedded or DOCQA_MODEL), then DOCQA_MODELS's NAME=PATH
    (a GGUF) or NAME=URL (a server; a name given several URLs is one model on several servers)."""

    def __init__(self, settings: Settings) -> None:
        self.default_name = "default"
        default = load_spec(self.default_name, Path(settings.model).expanduser() if settings.model
                            else embedded_model_path(settings.models_dir))
        if default.error and not settings.model:
            default.error = f"the embedded model is not fetched yet; run `docqa fetch-model` ({SMOLLM2.filename})"
        if default.error:
            log.error("model %s: %s", self.default_name, default.error)
        self.specs: dict[str, Spec] = {self.default_name: default}
        targets: dict[str, list[str]] = {}  # name -> its targets, in the order given
        for pair in filter(None, (p.strip() for p in (settings.models or "").split(","))):
            name, _, where = pair.partition("=")
            targets.setdefault(name.strip(), []).append(where.strip())
        for name, wheres in targets.items():
            self.specs[name] = kind_of(wheres).spec(name, wheres, settings)
        # -- models found on disk (docqa's pulled ones, DOCQA_MODEL_DIRS, Ollama, LM Studio, the Hugging Face and
        # llama.cpp caches): engine/discovery.py adds them by name after the configured ones; `skipped` keeps the
        # files found that are not usable models, with why (`docqa models` shows them).
        from docqa.engine.discovery import Found, add_found

        self.skipped: list[Found] = []
        add_found(self, settings)

    def get(self, name: str | None) -> Spec:
        spec = self.specs.get(name or self.default_name)
        if spec is None:
            raise NotFound(f"There is no model named {name!r}; see GET /api/models.")
        return spec.require()

    def list(self) -> list[Spec]:
        return list(self.specs.values())
