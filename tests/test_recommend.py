"""The recommendation, checked against the budget manager's own arithmetic (make_plan) and against the KV
bytes worked out by hand from each model's config.json, for three models on two machines; and the hub's
copy of a header read with a range request (a loopback hub), nothing else downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from litestar.testing import TestClient

from docqa.engine.budget import ContextBudgetExceeded, Memory, ModelShape, make_plan, pad_ctx
from docqa.engine.models import load_spec
from docqa.engine.recommend import BITS_PER_WEIGHT, KNOWN, _request, rows_for
from docqa.fetch import embedded_model_path, fetch_embedded_model
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.fake_hub import FakeHub, HubFile
from tests.support import LOOPBACK

GIB = 1024**3
MACHINES = (8 * GIB, 32 * GIB)
REPO = "someone/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture(scope="module")
def embedded() -> Path:
    path = embedded_model_path(Settings().models_dir)
    return path if path.is_file() else fetch_embedded_model(Settings().models_dir)


@pytest.fixture(scope="module")
def shapes(embedded: Path) -> dict[str, ModelShape]:
    """SmolLM2 from its GGUF header; Qwen3-4B and Qwen3-30B-A3B (Q4_K_M) from the known table."""
    known = {k.name: k for k in KNOWN}
    spec = load_spec("smollm2", embedded)
    assert spec.shape is not None

    def q4(name: str) -> ModelShape:
        k = known[name]
        return replace(k.shape, weights_bytes=int(k.n_params * BITS_PER_WEIGHT["Q4_K_M"] / 8))

    return {"smollm2": spec.shape, "qwen3-4b": q4("Qwen3-4B-Instruct-2507"),
            "qwen3-30b": q4("Qwen3-30B-A3B-Instruct-2507")}


def fits(settings: Settings, shape: ModelShape, memory: Memory, tokens: int, ct: str) -> bool:
    try:
        make_plan(_request(settings, shape, memory, tokens, ct, "whole"))
        return True
    except ContextBudgetExceeded:
        return False


# bytes of K + V per token, from config.json: layers × 2 × (KV heads × head_dim values), f16 2 bytes a value,
# q8_0 34 bytes and q4_0 18 bytes per 32 values
BY_HAND = {
    "smollm2": {"f16": 30 * 2 * 3 * 64 * 2, "q8_0": 30 * 2 * (3 * 64 // 32) * 34, "q4_0": 30 * 2 * (3 * 64 // 32) * 18},
    "qwen3-4b": {"f16": 36 * 2 * 8 * 128 * 2, "q8_0": 36 * 2 * (8 * 128 // 32) * 34,
                 "q4_0": 36 * 2 * (8 * 128 // 32) * 18},
    "qwen3-30b": {"f16": 48 * 2 * 4 * 128 * 2, "q8_0": 48 * 2 * (4 * 128 // 32) * 34,
                  "q4_0": 48 * 2 * (4 * 128 // 32) * 18},
}


@pytest.mark.parametrize("available", MACHINES, ids=["8GiB", "32GiB"])
@pytest.mark.parametrize("model", ["smollm2", "qwen3-4b", "qwen3-30b"])
def test_rows_agree_with_the_budget_manager(tmp_path: Path, shapes: dict[str, ModelShape], model: str,
                                            available: int) -> None:
    settings = Settings(data_dir=tmp_path)
    shape = shapes[model]
    memory = Memory(available, available, None, None)
    tokens = 6_000 if model == "smollm2" else 100_000
    rows = rows_for(settings, model, "Q", shape, memory, tokens, "test", True)
    assert [r.cache_type for r in rows] == ["f16", "q8_0", "q4_0"]
    for row in rows:
        ct = row.cache_type
        assert ct is not None
        n_ctx = pad_ctx(tokens + settings.question_tokens + settings.answer_tokens + settings.history_tokens)
        assert shape.kv_bytes(n_ctx, ct, ct) == n_ctx * BY_HAND[model][ct]  # the arithmetic, worked by hand
        expect_fits = fits(settings, shape, memory, tokens, ct)
        assert row.fits == expect_fits
        if expect_fits:
            plan = make_plan(_request(settings, shape, memory, tokens, ct, "whole"))
            assert plan.kv is not None
            assert row.needed_bytes == plan.kv.needed_bytes
            assert row.needed_bytes == (plan.kv.kv_bytes + plan.kv.compute_bytes + shape.weights_bytes
                                        + settings.memory_margin)
        longest = row.longest_whole_tokens
        if longest:
            assert fits(settings, shape, memory, longest, ct)
        if longest + 256 <= settings.max_context:
            assert not fits(settings, shape, memory, longest + 256, ct)  # the longest, to the 256-token step
        assert str(f"{tokens:,}-token document") in row.sentence()
    # more memory never reads less, and a smaller KV type never reads less
    assert rows[0].longest_whole_tokens <= rows[1].longest_whole_tokens <= rows[2].longest_whole_tokens


def test_the_two_machines_differ_as_the_planner_says(tmp_path: Path, shapes: dict[str, ModelShape]) -> None:
    settings = Settings(data_dir=tmp_path)
    small, large = (rows_for(settings, "q", "Q4_K_M", shapes["qwen3-4b"], Memory(m, m, None, None), 131_072, "t",
                             False) for m in MACHINES)
    assert [r.fits for r in small] == [False, False, True]  # 131K tokens of Qwen3-4B in 8 GiB: q4_0 KV only
    assert [r.fits for r in large] == [True, True, True]  # in 32 GiB: even f16 KV
    assert large[1].sentence().startswith("q Q4_K_M: ~2.5 GB of weights; a 131,072-token document needs")
    assert "fits in 34.4 GB available" in large[1].sentence()
    assert all(s.longest_whole_tokens < b.longest_whole_tokens for s, b in zip(small, large, strict=True))


@pytest.fixture
def hub(embedded: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub(REPO, [HubFile("SmolLM2-135M-Instruct-Q4_1.gguf", embedded)]).start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield server
    finally:
        server.stop()


def test_a_hub_repository_from_its_header_alone(hub: FakeHub, tmp_path: Path, embedded: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", preload=False)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        r = client.get("/api/models/recommend", params={"ref": f"hf:{REPO}", "memory": "8GiB", "tokens": 4096})
        assert r.status_code == 200, r.text
        table = r.json()
        no_ref = client.get("/api/models/recommend", params={"memory": "8G"}).json()
    rows = [row for row in table["rows"] if row["model"] == REPO]
    assert [(row["quant"], row["cache_type"]) for row in rows] == [("Q4_1", "f16"), ("Q4_1", "q8_0"),
                                                                    ("Q4_1", "q4_0")]
    local = load_spec("x", embedded)
    assert local.shape is not None
    expect = rows_for(settings, REPO, "Q4_1", local.shape, Memory(8 * GIB, 8 * GIB, None, None), 4096, "hub header",
                      True, pull=f"hf:{REPO}:Q4_1")
    assert [row["needed_bytes"] for row in rows] == [e.needed_bytes for e in expect]  # as from the file itself
    assert rows[0]["weights_bytes"] == embedded.stat().st_size and rows[0]["pull"] == f"hf:{REPO}:Q4_1"
    got = [r for m, p, r in hub.requests if m == "GET" and p.startswith("/cdn/")]
    assert got and all(r and r.startswith("bytes=0-") for r in got)  # only the header's first bytes
    assert no_ref["available_bytes"] == 8 * 10**9 and {row["model"] for row in no_ref["rows"]} >= {k.name
                                                                                                  for k in KNOWN}


def test_without_ref_nothing_reaches_a_hub(hub: FakeHub, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", preload=False)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        r = client.get("/api/models/recommend", params={"memory": "16G", "tokens": 32768})
        assert r.status_code == 200, r.text
        assert client.get("/api/models/recommend", params={"memory": "lots"}).status_code in (400, 422)
    assert hub.requests == []
    rows = r.json()["rows"]
    assert any(row["model"] == "Qwen3-4B-Instruct-2507" and row["fits"] for row in rows)


def test_a_remote_model_says_its_served_context(tmp_path: Path, embedded: Path) -> None:
    """A real llama-server (tests/llama_servers.py) with a 2,048-token slot: the recommendation names its served
    context, what fits in it beside the question, answer and history budgets, and no bytes."""
    import time

    from tests.llama_servers import LlamaServer

    server = LlamaServer(embedded, tmp_path / "ls.log", ctx=2048).start()
    try:
        settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", preload=False,
                            models=f"big={server.url}", question_tokens=64, answer_tokens=64, history_tokens=128)
        with TestClient(create_app(settings), base_url=LOOPBACK) as client:
            deadline = time.monotonic() + 60
            while True:
                rows = client.get("/api/models/recommend", params={"tokens": 1024}).json()["rows"]
                big = next(r for r in rows if r["model"] == "big")
                if "served context" in big["sentence"] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        server.stop()
    assert big["source"] == "remote" and big["needed_bytes"] is None and big["cache_type"] is None
    assert big["sentence"] == ("big: served context 2,048 tokens: a document up to 1,792 tokens is read whole, "
                               "a longer one in chunks")
    assert big["longest_whole_tokens"] == 2048 - 64 - 64 - 128 and big["fits"]
