"""Every kind of backend docqa can run a model with, registered in this one place.

A kind (backend.Kind) claims DOCQA_MODELS targets and makes a model's `Spec` from them; the spec's
`open()` makes its `Backend`. The built-in kinds register here exactly as a plug-in does, the way
`llm` registers its own models through the same hook as its plug-ins:

- a module of docqa: one line in `BUILT_IN` below (`remote.KIND`, `local.KIND`);
- a package installed beside docqa: an entry point in the `docqa.backends` group naming its `Kind`
  (`[project.entry-points."docqa.backends"] vllm = "my_pkg.vllm:KIND"`).

A target goes to the first kind that claims it, plug-ins first, then the built-in ones in order;
`local` claims whatever is left (a GGUF path), so it comes last.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from docqa.engine import local, remote
from docqa.engine.backend import Kind

log = logging.getLogger(__name__)

BUILT_IN: list[Kind] = [
    remote.KIND,  # http(s)://… : llama-server instances (remote.py)
    local.KIND,  # anything else: a GGUF file run by docqa's own runner (local.py); last, it claims all
]
_registered: list[Kind] = []
_plugins: list[Kind] | None = None
_lock = threading.Lock()


def register(kind: Kind) -> None:
    """Add a kind ahead of the built-in ones (a test, or a plug-in loaded by hand)."""
    with _lock:
        _registered[:] = [k for k in _registered if k.name != kind.name] + [kind]


def kinds() -> list[Kind]:
    """The registered kinds, in the order they are asked: registered, plug-ins, built-in."""
    global _plugins
    with _lock:
        if _plugins is None:
            _plugins = []
            for ep in entry_points(group="docqa.backends"):
                try:
                    _plugins.append(ep.load())
                except Exception as exc:  # noqa: BLE001 - a broken plug-in must not stop docqa
                    log.error("backend plug-in %s could not be loaded: %s", ep.name, exc)
        return [*_registered, *_plugins, *BUILT_IN]


def kind_of(targets: list[str]) -> Kind:
    """The first kind that claims every one of a model's targets (local claims all that is left)."""
    return next(k for k in kinds() if all(k.claims(t) for t in targets))
