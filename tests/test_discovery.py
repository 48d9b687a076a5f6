"""Models found on disk: Ollama's store, LM Studio's folder, the Hugging Face cache and llama.cpp's cache,
each built in a temporary HOME as the tool lays it out, holding the real embedded GGUF. They are listed
with where they were found and what their header says, a file that is not a usable model is skipped
with its reason, nothing in those folders is changed, and a question is answered by a found model
through the real runner.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from docqa.cli import main as cli
from docqa.engine.discovery import scan, tool_folders
from docqa.engine.models import ModelRegistry
from docqa.fetch import embedded_model_path, fetch_embedded_model
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.model_layouts import hf_cache_file, ollama_model, place, tiny_gguf
from tests.support import LOOPBACK

GGUF_NAME = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture(scope="module")
def embedded() -> Path:
    path = embedded_model_path(Settings().models_dir)
    return path if path.is_file() else fetch_embedded_model(Settings().models_dir)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and mtime: what "never change those folders" is checked against."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def home(tmp_path: Path, embedded: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME holding models in Ollama's, LM Studio's and the Hugging Face cache's layouts, and some files
    that are not usable models."""
    home = tmp_path / "home"
    for var in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "LLAMA_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCQA_DISCOVER_MODELS", "true")
    ollama = home / ".ollama" / "models"
    ollama_model(ollama, "smollm2", "135m", embedded)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(embedded.read_bytes()[: 4 * 1024 * 1024])
    ollama_model(ollama, "broken", "latest", truncated)
    ollama_model(ollama, "gone", "latest", None)  # manifest whose blob was never pulled
    lms = home / ".lmstudio" / "models" / "HuggingFaceTB" / "SmolLM2-135M-Instruct-GGUF"
    place(embedded, lms / GGUF_NAME)
    tiny_gguf(lms / "mmproj-SmolLM2-135M-f16.gguf", kind="mmproj", arch="clip")
    tiny_gguf(lms / "SmolLM2-lora-F16.gguf", kind="adapter", adapter=True)
    (lms / "README.gguf").write_text("not a model\n")
    hub = home / ".cache" / "huggingface" / "hub"
    hf_cache_file(hub, "bartowski/SmolLM2-135M-Instruct-GGUF", GGUF_NAME, embedded)
    split = tmp_path / "split"
    for i in (1, 2, 3):
        tiny_gguf(split / f"Tiny-Q8_0-{i:05d}-of-00003.gguf", split=(i, 3))
    for i in (1, 2, 3):
        hf_cache_file(hub, "someone/Tiny-GGUF", f"Q8_0/Tiny-Q8_0-{i:05d}-of-00003.gguf",
                      split / f"Tiny-Q8_0-{i:05d}-of-00003.gguf")
    for i in (1, 2):  # part 3 never finished downloading
        hf_cache_file(hub, "someone/Half-GGUF", f"Half-Q8_0-{i:05d}-of-00003.gguf",
                      split / f"Tiny-Q8_0-{i:05d}-of-00003.gguf")
    return home


@pytest.fixture
def settings_home(tmp_path: Path, home: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "docqa-models", preload=False)


def by_name(settings: Settings) -> dict[str, object]:
    return {f.name: f for f in scan(settings)}


def test_each_tool_folder_resolves_as_the_tool_does(tmp_path: Path) -> None:
    home = tmp_path / "h"
    default = dict(tool_folders({"HOME": str(home)}))
    assert default["Hugging Face"] == home / ".cache" / "huggingface" / "hub"
    assert default["llama.cpp"] == home / ".cache" / "llama.cpp"
    assert (("Ollama", home / ".ollama" / "models") in tool_folders({"HOME": str(home)}))
    env = {"HOME": str(home), "OLLAMA_MODELS": "/srv/ollama", "HF_HOME": "/srv/hf", "LLAMA_CACHE": "/srv/lc"}
    moved = tool_folders(env)
    assert ("Ollama", Path("/srv/ollama")) in moved and ("Hugging Face", Path("/srv/hf/hub")) in moved
    assert ("llama.cpp", Path("/srv/lc")) in moved
    assert ("Hugging Face", Path("/x/hub")) in tool_folders({**env, "HF_HUB_CACHE": "/x/hub"})  # it wins over HF_HOME


def test_found_models_are_listed_with_where_and_header(settings_home: Settings, home: Path, embedded: Path) -> None:
    before = snapshot(home)
    found = by_name(settings_home)
    ollama = found["ollama:smollm2:135m"]
    assert ollama.where == "Ollama: smollm2:135m" and ollama.skipped is None  # type: ignore[attr-defined]
    assert ollama.size_bytes == embedded.stat().st_size  # type: ignore[attr-defined]
    lms = found["lmstudio:HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1"]
    assert lms.where == "LM Studio: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF Q4_1"  # type: ignore[attr-defined]
    hf = found["hf:bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1"]
    assert hf.where == "Hugging Face: bartowski/SmolLM2-135M-Instruct-GGUF Q4_1"  # type: ignore[attr-defined]
    assert hf.path.is_symlink()  # type: ignore[attr-defined]  # read in place, through the cache's symlink
    # a split model is one model, its three parts counted together
    tiny = found["hf:someone/Tiny-GGUF:Q8_0"]
    assert len(tiny.parts) == 3 and tiny.path.name.endswith("-00001-of-00003.gguf")  # type: ignore[attr-defined]
    assert tiny.size_bytes == sum(p.stat().st_size for p in tiny.parts)  # type: ignore[attr-defined]
    skipped = {f.name: f.skipped for f in found.values() if f.skipped}  # type: ignore[attr-defined]
    by_file = {f.path.name: f.skipped for f in found.values()}  # type: ignore[attr-defined]
    assert "truncated" in skipped["ollama:broken:latest"]
    assert "missing" in skipped["ollama:gone:latest"] and "ollama pull" in skipped["ollama:gone:latest"]
    assert "vision projector" in by_file["mmproj-SmolLM2-135M-f16.gguf"]
    assert "LoRA adapter" in by_file["SmolLM2-lora-F16.gguf"]
    assert "not a GGUF" in by_file["README.gguf"]
    assert "part 3 of 3 is missing" in skipped["hf:someone/Half-GGUF:Q8_0"]
    assert snapshot(home) == before  # nothing in the tools' folders was written, moved or touched


def test_registry_offers_found_models_and_api_shows_where(settings_home: Settings) -> None:
    registry = ModelRegistry(settings_home)
    names = {s.name for s in registry.list()}
    assert {"ollama:smollm2:135m", "hf:bartowski/SmolLM2-135M-Instruct-GGUF:Q4_1"} <= names
    assert "ollama:broken:latest" not in names
    assert {f.name for f in registry.skipped} >= {"ollama:broken:latest", "ollama:gone:latest"}
    with TestClient(create_app(settings_home), base_url=LOOPBACK) as client:
        models = {m["name"]: m for m in client.get("/api/models").json()}
    m = models["ollama:smollm2:135m"]
    assert m["where"] == "Ollama: smollm2:135m" and m["source"] == "Ollama"
    assert m["architecture"] == "llama" and m["quantization"] == "Q4_1" and m["n_ctx_train"] == 8192
    assert "path" not in m
    tiny = models["hf:someone/Tiny-GGUF:Q8_0"]
    assert tiny["parts"] == 3 and tiny["size_bytes"] == registry.specs["hf:someone/Tiny-GGUF:Q8_0"].shape.weights_bytes


def test_a_model_pulled_while_docqa_runs_appears(settings_home: Settings, home: Path, embedded: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import docqa.engine.discovery as discovery

    monkeypatch.setattr(discovery, "RESCAN_S", 0.0)
    with TestClient(create_app(settings_home), base_url=LOOPBACK) as client:
        assert "ollama:tiny:latest" not in {m["name"] for m in client.get("/api/models").json()}
        new = tiny_gguf(home / "incoming" / "tiny.gguf")
        ollama_model(home / ".ollama" / "models", "tiny", "latest", new)  # `ollama pull tiny` meanwhile
        models = {m["name"]: m for m in client.get("/api/models").json()}
        assert models["ollama:tiny:latest"]["where"] == "Ollama: tiny:latest"


def test_llama_cpp_cache_in_both_layouts(tmp_path: Path, embedded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "llama-cache"
    monkeypatch.setenv("LLAMA_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    for var in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    # older builds: <org>_<repo>_<file>.gguf beside manifest=<org>=<repo>=<tag>.json
    place(embedded, cache / "bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf")
    (cache / "manifest=bartowski=SmolLM2-135M-Instruct-GGUF=Q4_1.json").write_text("{}")
    # newer builds: the Hugging Face cache layout
    hf_cache_file(cache, "ggml-org/SmolLM2-GGUF", GGUF_NAME, embedded)
    settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", discover_models=True)
    found = {f.where: f for f in scan(settings)}
    assert "llama.cpp: bartowski/SmolLM2-135M-Instruct-GGUF SmolLM2-135M-Instruct-Q4_1.gguf" in found
    assert found["llama.cpp: ggml-org/SmolLM2-GGUF Q4_1"].name == "llama.cpp:ggml-org/SmolLM2-GGUF:Q4_1"
    assert all(f.skipped is None for f in found.values())


def test_discovery_can_be_turned_off_and_folders_added(tmp_path: Path, home: Path, embedded: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "my-models"
    place(embedded, extra / "sub" / "contract-reader.gguf")
    settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", discover_models=False,
                        model_dirs=str(extra))
    names = {f.name: f for f in scan(settings)}
    assert list(names) == ["contract-reader"] and names["contract-reader"].where == "folder: contract-reader"


def test_cli_lists_found_and_skipped(settings_home: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_DATA_DIR", str(settings_home.data_dir))
    monkeypatch.setenv("DOCQA_MODELS_DIR", str(settings_home.models_dir))
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    assert "ollama:smollm2:135m" in result.output and "Ollama: smollm2:135m" in result.output
    assert "skipped" in result.output and "vision projector" in result.output and "truncated" in result.output


@pytest.fixture
def found_client(settings_home: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings_home), base_url=LOOPBACK) as client:
        yield client


def test_a_found_model_answers_a_question(found_client: TestClient) -> None:
    text = "The grass is green.\nThe pass key is 52817. Remember it.\nThe sky is blue.\n"
    doc = found_client.post("/api/documents", files={"file": ("notes.txt", text.encode(), "text/plain")}).json()
    r = found_client.post("/api/sessions", json={"document_ids": [doc["id"]], "model": "ollama:smollm2:135m"})
    assert r.status_code == 201, r.text
    r = found_client.post(f"/api/sessions/{r.json()['id']}/questions",
                          json={"question": "What is the pass key?", "max_tokens": 24,
                                "sampling": {"temperature": 0, "seed": 1}})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "52817" in answer["answer"] or any("52817" in (c["quote"] or "") for c in answer["citations"]), answer
    health = found_client.get("/api/health").json()["details"]["models"]["ollama:smollm2:135m"]
    assert health["error"] is None
    # the recommendation now predicts this model's reading time from that measured reading (reading.py)
    table = found_client.get("/api/models/recommend", params={"tokens": 2048}).json()
    row = next(r for r in table["rows"] if r["model"].startswith("ollama:smollm2:135m"))
    assert row["reading"]["rate_tokens_per_s"] > 0 and row["reading"]["seconds"] > 0, row
    assert "reading it takes about" in row["sentence"]
