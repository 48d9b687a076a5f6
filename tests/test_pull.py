"""Pulling a model by name with the real huggingface_hub, against a hub on loopback (tests/fake_hub.py)
serving the embedded GGUF: a whole pull, one resumed after the server cuts the connection mid-body, one
resumed from an earlier attempt's partial file, a wrong checksum refused with a sentence, unknown names,
offline mode, and the API's pull for whoever may manage models. HF_ENDPOINT points at the loopback
server in every test; no test reaches a real hub.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from docqa.cli import main as cli
from docqa.engine.models import ModelRegistry
from docqa.fetch import embedded_model_path, fetch_embedded_model
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.fake_hub import FakeHub, HubFile
from tests.model_layouts import sha256_of, tiny_gguf
from tests.support import LOOPBACK

REPO = "someone/SmolLM2-135M-Instruct-GGUF"
GGUF = "SmolLM2-135M-Instruct-Q4_1.gguf"
NAME = f"hf:{REPO}:Q4_1"


@pytest.fixture(scope="module")
def embedded() -> Path:
    path = embedded_model_path(Settings().models_dir)
    return path if path.is_file() else fetch_embedded_model(Settings().models_dir)


@pytest.fixture(scope="module")
def extras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hubfiles")
    tiny_gguf(root / "mmproj-SmolLM2-F16.gguf", kind="mmproj", arch="clip")
    for i in (1, 2):
        tiny_gguf(root / f"Tiny-Q8_0-{i:05d}-of-00002.gguf", split=(i, 2))
    (root / "README.md").write_text("# SmolLM2 GGUF\n")
    return root


@pytest.fixture
def hub(embedded: Path, extras: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    files = [HubFile(GGUF, embedded), HubFile("mmproj-SmolLM2-F16.gguf", extras / "mmproj-SmolLM2-F16.gguf"),
             HubFile("README.md", extras / "README.md", lfs=False)]
    files += [HubFile(f"Q8_0/Tiny-Q8_0-{i:05d}-of-00002.gguf", extras / f"Tiny-Q8_0-{i:05d}-of-00002.gguf")
              for i in (1, 2)]
    server = FakeHub(REPO, files).start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)  # every pull goes to loopback
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DOCQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCQA_MODELS_DIR", str(tmp_path / "models"))
    return Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", preload=False)


def resumes(hub: FakeHub) -> list[str]:
    """The Range requests that resumed a body (not the fit check's read of the header, bytes=0-…)."""
    return [r for r in hub.range_requests() if not r.startswith("bytes=0-")]


def pull(ref: str):  # noqa: ANN201
    return CliRunner().invoke(cli, ["pull", ref])


def landed(settings: Settings, path: str = GGUF) -> Path:
    return settings.models_dir / "hf" / REPO / path


def no_partial_files(settings: Settings) -> bool:
    return not [p for p in settings.models_dir.rglob("*.part") if p.is_file()]


def test_a_complete_pull(hub: FakeHub, settings_pull: Settings, embedded: Path) -> None:
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    assert f"model ready: {NAME}" in result.output and "sha256 checked" in result.output
    # said before the download: whether it fits, from the hub's copy of its header (a range request)
    assert "fits: someone/SmolLM2-135M-Instruct-GGUF Q4_1: 0.1 GB of weights; a 6,144-token document" in result.output
    assert sha256_of(landed(settings_pull)) == sha256_of(embedded)
    assert no_partial_files(settings_pull)
    assert resumes(hub) == []  # one body, start to end
    methods = [(m, p.split("/")[1]) for m, p, _ in hub.requests]
    assert ("GET", "api") in methods and ("HEAD", REPO.split("/")[0]) in methods and ("GET", "cdn") in methods
    registry = ModelRegistry(settings_pull)  # found by name, where docqa keeps what it pulled
    spec = registry.get(NAME)
    assert spec.describe()["where"] == f"docqa: {REPO} Q4_1"
    again = pull(NAME)  # already there: nothing downloaded again
    assert again.exit_code == 0, again.output
    assert sum(1 for m, p, r in hub.requests if m == "GET" and p.startswith("/cdn/") and r is None) == 1


def test_a_pull_resumes_after_the_connection_is_cut(hub: FakeHub, settings_pull: Settings, embedded: Path) -> None:
    cut = 10 * 1024 * 1024
    hub.cut_after = cut  # the first body stops there and the socket is closed
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    assert resumes(hub) == [f"bytes={cut}-"]  # asked again from the byte where it stopped
    assert sha256_of(landed(settings_pull)) == sha256_of(embedded)
    assert no_partial_files(settings_pull)


def test_a_pull_resumes_an_earlier_attempts_partial_file(hub: FakeHub, settings_pull: Settings,
                                                         embedded: Path) -> None:
    part = settings_pull.models_dir / ".partial" / "hf" / REPO / (GGUF + ".part")
    part.parent.mkdir(parents=True)
    have = 30 * 1024 * 1024 + 17
    with embedded.open("rb") as src:
        part.write_bytes(src.read(have))  # what a pull stopped half-way left behind
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    assert resumes(hub) == [f"bytes={have}-"]
    assert sha256_of(landed(settings_pull)) == sha256_of(embedded)


def test_a_server_that_ignores_the_range_still_gives_the_right_file(hub: FakeHub, settings_pull: Settings,
                                                                    embedded: Path) -> None:
    hub.ignore_range = True  # the resumed request gets the whole file again: huggingface_hub starts over
    part = settings_pull.models_dir / ".partial" / "hf" / REPO / (GGUF + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1_000_000)  # not even the right bytes: they must all be replaced
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    assert resumes(hub) == ["bytes=1000000-"]
    assert sha256_of(landed(settings_pull)) == sha256_of(embedded)


def test_a_wrong_checksum_is_refused_with_a_sentence(hub: FakeHub, settings_pull: Settings) -> None:
    hub.lie_sha256 = True  # the hub lists another sha256 than the bytes it serves
    result = pull(NAME)
    assert result.exit_code == 1
    assert "sha256" in result.output and "was deleted" in result.output and "Pull it again" in result.output
    assert not landed(settings_pull).exists() and no_partial_files(settings_pull)
    assert NAME not in ModelRegistry(settings_pull).specs


def test_unknown_repository_and_quantization_and_offline(hub: FakeHub, settings_pull: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    r = pull("hf:nobody/Nothing-GGUF:Q4_K_M")
    assert r.exit_code == 1 and "There is no repository nobody/Nothing-GGUF" in r.output
    r = pull(f"hf:{REPO}:Q5_K_M")
    assert r.exit_code == 1 and "has no Q5_K_M quantization; it has Q4_1, Q8_0" in r.output
    r = pull("Qwen/Qwen3-4B")
    assert r.exit_code == 1 and "hf:ORG/REPO:QUANT" in r.output
    hub.files.append(HubFile("../../evil-Q2_K.gguf", hub.files[1].source))  # a hostile mirror's listing
    r = pull(f"hf:{REPO}:Q2_K")
    assert r.exit_code == 1 and "outside docqa's models folder" in r.output
    assert not list(settings_pull.models_dir.parent.glob("evil*")) and not any(
        p.startswith("/cdn/") for _, p, _ in hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(hub.requests)
    r = pull(NAME)
    assert r.exit_code == 1 and "Offline mode is on" in r.output
    assert len(hub.requests) == seen  # offline: not one request


def test_hf_token_goes_to_the_hub_and_not_to_the_cdn(hub: FakeHub, settings_pull: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_for_tests")
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    api = [auth for path, auth in hub.authorizations if not path.startswith("/cdn/")]
    cdn = [auth for path, auth in hub.authorizations if path.startswith("/cdn/")]
    assert api and all(auth == "Bearer hf_secret_token_for_tests" for auth in api)
    assert cdn and all(auth is None for auth in cdn)  # the CDN is another host: the token stays home


def test_a_split_model_and_an_exact_file(hub: FakeHub, settings_pull: Settings) -> None:
    r = pull(f"hf:{REPO}:Q8_0")
    assert r.exit_code == 0, r.output
    assert landed(settings_pull, "Q8_0/Tiny-Q8_0-00001-of-00002.gguf").is_file()
    assert landed(settings_pull, "Q8_0/Tiny-Q8_0-00002-of-00002.gguf").is_file()
    assert f"model ready: hf:{REPO}:Q8_0" in r.output
    r = pull(f"hf:{REPO}/mmproj-SmolLM2-F16.gguf")  # an exact file that is no model: pulled, then said
    assert r.exit_code == 1 and "vision projector" in r.output


def wait_for(client: TestClient, pull_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/models/pulls/{pull_id}").json()
        if body["status"] != "downloading":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def test_the_api_pulls_for_model_managers(hub: FakeHub, settings_pull: Settings) -> None:
    with TestClient(create_app(settings_pull), base_url=LOOPBACK) as client:  # loopback mode: anyone may
        r = client.post("/api/models/pull", json={"model": NAME})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["status"] == "downloading" and started["bytes_total"] == landed_size(hub)
        done = wait_for(client, started["id"])
        assert done["status"] == "done" and done["model"] == NAME and done["bytes_done"] == done["bytes_total"]
        assert done["fit"]["fits"] and done["fit"]["weights_bytes"] == landed_size(hub)
        models = {m["name"]: m for m in client.get("/api/models").json()}
        assert models[NAME]["where"] == f"docqa: {REPO} Q4_1" and models[NAME]["error"] is None
        # the only step left is choosing it: a question answered by the pulled model, no restart
        text = "The grass is green.\nThe pass key is 52817. Remember it.\nThe sky is blue.\n"
        doc = client.post("/api/documents", files={"file": ("n.txt", text.encode(), "text/plain")}).json()
        r = client.post("/api/sessions", json={"document_ids": [doc["id"]], "model": NAME})
        assert r.status_code == 201, r.text
        r = client.post(f"/api/sessions/{r.json()['id']}/questions",
                        json={"question": "What is the pass key?", "max_tokens": 24,
                              "sampling": {"temperature": 0, "seed": 1}})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert "52817" in answer["answer"] or any("52817" in (c["quote"] or "") for c in answer["citations"]), answer
        r = client.post("/api/models/pull", json={"model": f"hf:{REPO}:Q2_K"})
        assert r.status_code == 404 and "has no Q2_K quantization" in r.json()["detail"]
        r = client.post("/api/models/pull", json={"model": "hf:nobody/x"})
        assert r.status_code == 404 and "There is no repository" in r.json()["detail"]
        assert client.get("/api/models/pulls/nope").status_code == 404


def test_a_cancelled_pull_keeps_what_arrived_and_resumes(hub: FakeHub, settings_pull: Settings,
                                                         embedded: Path) -> None:
    hub.chunk_delay_s = 0.01  # ~15 s for the whole file: time to cancel it
    with TestClient(create_app(settings_pull), base_url=LOOPBACK) as client:
        pull_id = client.post("/api/models/pull", json={"model": NAME}).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/api/models/pulls/{pull_id}").json()["bytes_done"] < 1_000_000:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = client.delete(f"/api/models/pulls/{pull_id}")
        assert r.status_code == 202, r.text
        stopped = wait_for(client, pull_id)
        assert stopped["status"] == "cancelled" and "resumes" in stopped["error"]["detail"]
    part = settings_pull.models_dir / ".partial" / "hf" / REPO / (GGUF + ".part")
    have = part.stat().st_size
    assert 0 < have < landed_size(hub) and not landed(settings_pull).exists()
    hub.chunk_delay_s = 0.0
    result = pull(NAME)
    assert result.exit_code == 0, result.output
    assert resumes(hub)[-1] == f"bytes={have}-"
    assert sha256_of(landed(settings_pull)) == sha256_of(embedded)


def test_a_checksum_failure_shows_in_the_pull(hub: FakeHub, settings_pull: Settings) -> None:
    hub.lie_sha256 = True
    with TestClient(create_app(settings_pull), base_url=LOOPBACK) as client:
        r = client.post("/api/models/pull", json={"model": NAME})
        assert r.status_code == 202, r.text
        failed = wait_for(client, r.json()["id"])
        assert failed["status"] == "failed" and failed["error"]["status_code"] == 502
        assert "sha256" in failed["error"]["detail"] and NAME not in {m["name"] for m in
                                                                      client.get("/api/models").json()}


def test_with_api_keys_only_managers_may_pull(hub: FakeHub, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", preload=False,
                        api_keys="alice:key-alice-123456,bob:key-bob-1234567", model_managers="alice")
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        r = client.post("/api/models/pull", json={"model": NAME}, headers={"X-API-Key": "key-bob-1234567"})
        assert r.status_code == 403 and "DOCQA_MODEL_MANAGERS" in r.json()["detail"]
        assert client.get("/api/models/pulls", headers={"X-API-Key": "key-bob-1234567"}).status_code == 403
        assert not hub.requests  # refused before the hub was asked anything
        r = client.post("/api/models/pull", json={"model": NAME}, headers={"X-API-Key": "key-alice-123456"})
        assert r.status_code == 202, r.text
        pull_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (s := client.get(f"/api/models/pulls/{pull_id}",
                               headers={"X-API-Key": "key-alice-123456"}).json())["status"] == "downloading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert s["status"] == "done", s


def landed_size(hub: FakeHub) -> int:
    return next(f.size for f in hub.files if f.path == GGUF)
