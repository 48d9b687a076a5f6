"""The import graph of docqa, read from the source (every import, those inside functions and under
TYPE_CHECKING too): no module imports itself back through others (no cycle), and no layer imports a
layer above it. The layers, lowest first:

    base        errors, settings, text, tokens, fetch, hosts, access, rules
    store       store/, ingest/
    backends    what runs a model: the seam (engine/backend.py) and each backend's modules
    engine      planning, prompts, chunking, citations, grounding; the model registry
    use cases   sessions, batches, documents, readahead, worker, reading, ratelimit
    web         web/, cli

A module of engine/ not named in ENGINE is a backend's (a new backend needs no entry here).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "docqa"

ENGINE = {"engine", "models", "backends", "grounding", "citations", "clause_cites", "chunking", "prompts", "sources",
          "token_counts"}
LAYERS = ["base", "store", "backends", "engine", "use cases", "web"]
USE_CASES = {"sessions", "batches", "documents", "readahead", "worker", "reading", "ratelimit"}

# Left to the helper that owns docqa/ingest (`formats`), which removes them: the lead deletes these lines then.
KNOWN = {
    "cycles": [{"docqa.ingest.archive", "docqa.ingest.detect", "docqa.ingest.docx"}],
    "upward": [("docqa.ingest.sandbox_child", "docqa.cli")],  # preloads the CLI in the parse forkserver
}


def layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "base"
    top = parts[0]
    if top in ("web", "cli"):
        return "web"
    if top in USE_CASES:
        return "use cases"
    if top in ("store", "ingest"):
        return "store"
    if top == "engine":
        return "engine" if len(parts) > 1 and parts[1] in ENGINE else "backends"
    return "base"


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The docqa modules `name` imports, wherever in the file the import is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from docqa.engine import grounding` imports the module docqa.engine.grounding
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import docqa.engine.x.y` counts as its deepest docqa module
                t = t.rpartition(".")[0]
            if t.startswith("docqa") and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_every_import_including_those_in_functions() -> None:
    g = graph()
    assert "docqa.engine.engine" in g and "docqa.web.app" in g and len(g) > 60
    assert "docqa.engine.backend" in g["docqa.engine.local"]  # a module-level import
    assert "docqa.ingest.parse" in g["docqa.ingest.sandbox"]  # an import inside a function (the parse child)
    example = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(example) == [{"a", "b", "c"}]


def test_no_module_imports_itself_back() -> None:
    found = [c for c in cycles(graph()) if c not in KNOWN["cycles"]]
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(sorted(c)) for c in found)


def test_no_layer_imports_a_layer_above_it() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted((a, b) for a, targets in graph().items() for b in targets
                    if rank[layer(b)] > rank[layer(a)] and (a, b) not in KNOWN["upward"])
    assert not upward, "upward imports: " + "; ".join(f"{a} ({layer(a)}) → {b} ({layer(b)})" for a, b in upward)
