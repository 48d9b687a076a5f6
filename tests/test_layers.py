"""The import graph of docqa, read from the source (every import, those inside functions and under
TYPE_CHECKING too): no module imports itself back through others (no cycle), and no layer imports a
layer above it. The layers, lowest first:

    base        errors, settings, text, tokens, fetch, hosts, access, rules
    store       store/, ingest/
    backends    what runs a model: the seam and what every backend shares (engine/backend.py, budget,
                gguf_meta, template, sampling, loops: SEAM below) and each backend's package
                (engine/local/, engine/remote/, or a new one)
    engine      planning, prompts, chunking, passages, citations, grounding; the model registry,
                discovery and recommendations
    use cases   sessions, batches, documents, readahead, worker, reading, ratelimit, pull
    web         web/, cli

A package of engine/ is a backend's (a new backend needs no entry here); a module directly in engine/
is the engine's unless SEAM names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "docqa"

SEAM = {"backend", "budget", "gguf_meta", "template", "sampling", "loops"}
LAYERS = ["base", "store", "backends", "engine", "use cases", "web"]
USE_CASES = {"sessions", "batches", "documents", "readahead", "worker", "reading", "ratelimit", "pull"}

# The one exception, on purpose: the parse forkserver's preload imports what `docqa serve` imported, so each
# parse child finds it in sys.modules (sandbox_child.py says why); it is never imported by docqa itself.
KNOWN: dict[str, list] = {
    "cycles": [],
    "upward": [("docqa.ingest.sandbox_child", "docqa.cli")],
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
        if len(parts) == 1:
            return "engine"
        package = (ROOT / "engine" / parts[1]).is_dir()
        return "backends" if package or parts[1] in SEAM else "engine"
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


def test_every_docqa_error_lives_in_errors_py_with_a_code_of_its_own() -> None:
    """One place for every typed error, and one code table (errors.CODES) that the parse sandbox and the model
    runner report through: a class of DocqaError defined anywhere else would be missing from it."""
    from docqa import errors

    elsewhere = []
    for name, path in modules().items():
        if name == "docqa.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = {c.__name__ for c in errors.CODES.values()}
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")) in names
                                                      for b in node.bases):
                elsewhere.append(f"{name}.{node.name}")
    assert not elsewhere, f"errors defined outside errors.py: {elsewhere}"
    every = errors._every(errors.DocqaError)
    assert len({c.code for c in every}) == len(every)  # no two errors share a code
    assert errors.CODES["busy"] is errors.QueueFull and errors.CODES["parse_limit"] is errors.ParseLimitExceeded
    reported = errors.from_code("context_allocation_failed", "no room", {"n_ctx": 4096})
    assert isinstance(reported, errors.ContextAllocationFailed) and reported.extra == {"n_ctx": 4096}
    assert type(errors.from_code("no_such_code", "?", default=errors.RunnerError)) is errors.RunnerError
