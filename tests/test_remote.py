"""Remote models, for real: docqa in front of two real llama-server instances serving the embedded
SmolLM2 (tests/llama_servers.py builds the server once and caches it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from docqa.engine.models import ModelRegistry
from docqa.engine.remote.client import ThinkingSplit, api_keys
from docqa.fetch import embedded_model_path
from docqa.settings import Settings
from docqa.web.app import create_app
from tests.llama_servers import LlamaServer
from tests.support import LOOPBACK
from tests.test_answers import GREEDY, PASS_KEY, QUESTION, assert_refused, haystack, sse_events, upload

CTX = 2048  # per slot: a ~2,600-token document does not fit and goes chunked
SMALL = {"question_tokens": 64, "answer_tokens": 64, "history_tokens": 128, "chunk_context": CTX}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LlamaServer]]:
    model = embedded_model_path(Settings().models_dir)
    logs = tmp_path_factory.mktemp("llama-server")
    started = [LlamaServer(model, logs / f"{i}.log", ctx=CTX).start() for i in range(2)]
    yield started
    for s in started:
        s.stop()


def remote_settings(tmp_path: Path, urls: list[str], **extra: object) -> Settings:
    models = ",".join(f"big={u}" for u in urls)
    return Settings(data_dir=tmp_path / "data", models=models, remote_probe_s=1, **{**SMALL, **extra})


@pytest.fixture
def client(tmp_path: Path, servers: list[LlamaServer]) -> Iterator[TestClient]:
    with TestClient(create_app(remote_settings(tmp_path, [s.url for s in servers])), base_url=LOOPBACK) as c:
        yield c


def session(client: TestClient, doc_id: str, **extra: object) -> dict:
    r = client.post("/api/sessions", json={"document_ids": [doc_id], "model": "big", **extra})
    assert r.status_code == 201, r.text
    return r.json()


def ask(client: TestClient, session_id: str, question: str = QUESTION, **extra: object) -> httpx.Response:
    body = {"question": question, "max_tokens": 24, "sampling": GREEDY, **extra}
    return client.post(f"/api/sessions/{session_id}/questions", json=body)


def test_models_and_health_show_each_server(client: TestClient, servers: list[LlamaServer]) -> None:
    big = next(m for m in client.get("/api/models").json() if m["name"] == "big")
    assert big["backend"] == "remote" and big["kind"] == "llama-server" and big["error"] is None
    assert big["n_ctx"] == CTX and big["n_ctx_train"] == 8192
    assert [s["url"] for s in big["servers"]] == [s.url for s in servers]
    assert all(s["state"] == "up" and s["total_slots"] == 1 for s in big["servers"])
    health = client.get("/api/health").json()["details"]["models"]["big"]
    assert health["ready"] and [s["state"] for s in health["servers"]] == ["up", "up"]
    assert health["capabilities"] == {"kv_budget": False, "prefix_cache": True, "state_snapshots": False,
                                      "progress": True}


def test_pass_key_then_a_cached_follow_up(client: TestClient) -> None:
    doc = upload(client, "haystack.txt", haystack(80))
    s = session(client, doc["id"])
    plan = s["plan"]
    assert plan["mode"] == "whole" and plan["backend"] == "remote"
    assert plan["summary"].startswith(f"served context {CTX:,} tokens on http://127.0.0.1:")
    assert f"the documents need {plan['prompt_tokens'] + 64 + 128 + 64:,}" in plan["summary"]
    first = ask(client, s["id"])
    assert first.status_code == 200, first.text
    assert PASS_KEY in first.json()["answer"]
    prefix = plan["prompt_tokens"]
    follow = ask(client, s["id"], "Say the pass key again.")
    assert follow.status_code == 200, follow.text
    timings = follow.json()["timings"]
    assert timings["cached_tokens"] >= 0.9 * prefix, timings


def test_progress_events_come_from_prompt_progress(client: TestClient) -> None:
    doc = upload(client, "stream.txt", haystack(120))
    s = session(client, doc["id"])
    r = client.post(f"/api/sessions/{s['id']}/questions", headers={"Accept": "text/event-stream"},
                    json={"question": QUESTION, "max_tokens": 16, "sampling": GREEDY})
    assert r.status_code == 200
    events = sse_events(r.text)
    progress = [d for e, d in events if e == "progress"]
    assert progress and all(p["source"] == "prompt_progress" for p in progress)
    assert progress[-1]["tokens_done"] == progress[-1]["tokens_total"] >= s["plan"]["prompt_tokens"]
    assert [e for e, _ in events][-1] == "done" and any(e == "token" for e, _ in events)


def test_an_oversized_set_goes_chunked_and_forced_whole_is_refused(client: TestClient) -> None:
    doc = upload(client, "long.txt", haystack(380))
    r = client.post("/api/plan", json={"document_ids": [doc["id"]], "model": "big", "mode": "whole"})
    body = assert_refused(r, 422, "serves 2,048 per question", "Use chunked mode")
    assert body["status_code"] == 422
    s = session(client, doc["id"])
    plan = s["plan"]
    assert plan["mode"] == "chunked" and plan["n_chunks"] >= 2
    assert f"chunked into {plan['n_chunks']} chunks of ≤ {CTX:,}" in plan["summary"]
    a = ask(client, s["id"])
    assert a.status_code == 200, a.text
    assert a.json()["mode"] == "chunked" and a.json()["coverage"]["chunks_total"] == plan["n_chunks"]


def test_batch_survives_a_server_killed_mid_batch(tmp_path: Path) -> None:
    """Two fresh servers (the module's stay up for the other tests); one is SIGKILLed mid-batch."""
    model = embedded_model_path(Settings().models_dir)
    pair = [LlamaServer(model, tmp_path / f"kill{i}.log", ctx=CTX).start() for i in range(2)]
    try:
        settings = remote_settings(tmp_path, [s.url for s in pair], batch_workers=2)
        with TestClient(create_app(settings), base_url=LOOPBACK) as client:
            doc = upload(client, "haystack.txt", haystack(40))
            questions = [f"{QUESTION} ({i})" for i in range(6)]
            r = client.post("/api/batches", json={"document_ids": [doc["id"]], "questions": questions,
                                                  "model": "big", "max_tokens": 12, "sampling": GREEDY})
            assert r.status_code == 202, r.text
            batch = r.json()["id"]
            deadline = time.monotonic() + 300
            killed = False
            while time.monotonic() < deadline:
                state = client.get(f"/api/batches/{batch}").json()
                health = client.get("/api/health").json()["details"]["models"]["big"]
                if not killed and state["done"] >= 1 and health["servers"][1]["in_flight"]:
                    pair[1].kill()  # mid-answer: its question is retried on the other server
                    killed = True
                if state["status"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.3)
            assert killed and state["status"] == "done", state
            results = state["results"]
            assert sorted(r["question_index"] for r in results) == list(range(6))  # each once
            assert all(r["status"] == "done" and r["answer"] for r in results), results
            retried = [n for r in results for n in r["notes"] if n.startswith("Retried on")]
            assert len(retried) == 1 and pair[1].url in retried[0] and pair[0].url in retried[0], retried
            health = client.get("/api/health").json()["details"]["models"]["big"]
            assert [s["state"] for s in health["servers"]] == ["up", "down"]
            assert "cannot be reached" in health["servers"][1]["error"]
    finally:
        for s in pair:
            s.stop()


def test_unreachable_servers_get_a_503_naming_them(tmp_path: Path) -> None:
    from tests.browser import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with TestClient(create_app(remote_settings(tmp_path, [url])), base_url=LOOPBACK) as client:
        doc = upload(client, "a.txt", "Hello.\n")
        r = client.post("/api/sessions", json={"document_ids": [doc["id"]], "model": "big"})
        assert_refused(r, 503, url, "cannot be reached")
        big = next(m for m in client.get("/api/models").json() if m["name"] == "big")
        assert big["servers"][0]["state"] == "down" and url in big["error"]


def test_api_keys_are_per_server_and_never_shown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, remote_api_keys="http://a:1=sk-one,sk-every")
    assert api_keys(settings) == {"http://a:1": "sk-one", "*": "sk-every"}
    assert "sk-one" not in repr(settings) and "sk-one" not in str(settings.model_dump())
    registry = ModelRegistry(Settings(data_dir=tmp_path, models="big=http://a:1,big=http://b:2",
                                      remote_api_keys="http://a:1=sk-one,sk-every"))
    spec = registry.specs["big"]
    assert "sk-" not in repr(spec) and all("sk-" not in repr(s) for s in spec.servers)  # type: ignore[attr-defined]


def test_thinking_split_survives_a_tag_cut_across_chunks() -> None:
    split = ThinkingSplit(in_thinking=True)
    out = [e for piece in ("I think", " hard</th", "ink>\nThe", " answer") for e in split.feed(piece)]
    assert split.thinking == "I think hard" and split.answer == "The answer"
    assert ("thinking", "I think") in out and out[-1] == ("token", " answer")


def test_a_cancelled_question_closes_the_upstream_stream(client: TestClient, servers: list[LlamaServer]) -> None:
    """The engine's cancel flag closes the HTTP stream; llama-server then frees its slot at once."""
    from docqa.engine.engine import AskOptions

    app = client.app
    engine, registry = app.state.engine, app.state.registry
    spec = registry.get("big")
    doc = upload(client, "cancel.txt", haystack(200))
    sources = app.state.sessions.sources([doc["id"]])
    plan = engine.plan(spec, sources)
    cancel = threading.Event()
    seen: list[str] = []

    def on_event(kind: str, data: dict) -> None:
        seen.append(kind)
        if kind == "progress":
            cancel.set()

    logged = [s.log.stat().st_size for s in servers]
    with pytest.raises(Exception) as caught:
        engine.answer(spec, plan, sources, QUESTION, AskOptions(max_tokens=64), on_event, cancel)
    assert type(caught.value).__name__ == "Cancelled" and "progress" in seen
    # llama-server notices the closed stream after the batch it is computing and cancels the task
    deadline = time.monotonic() + 120
    said = ""
    while time.monotonic() < deadline and "cancel task" not in said:
        said = "".join(s.log.read_bytes()[n:].decode("utf-8", "replace") for s, n in zip(servers, logged, strict=True))
        time.sleep(0.2)
    assert "cancel task" in said, said[-2000:]
    deadline = time.monotonic() + 30
    busy = True
    while busy and time.monotonic() < deadline:
        busy = any(slot["is_processing"] for s in servers for slot in httpx.get(f"{s.url}/slots", timeout=5).json())
        time.sleep(0.2)
    assert not busy


def test_the_cli_works_with_a_remote_model(tmp_path: Path, servers: list[LlamaServer]) -> None:
    from click.testing import CliRunner

    from docqa.cli import main as cli

    path = tmp_path / "haystack.txt"
    path.write_text(haystack(60))
    env = {"DOCQA_DATA_DIR": str(tmp_path / "data"), "DOCQA_SEED": "1", "DOCQA_MODELS": f"big={servers[0].url}",
           "DOCQA_QUESTION_TOKENS": "64", "DOCQA_ANSWER_TOKENS": "64", "DOCQA_HISTORY_TOKENS": "128"}
    runner = CliRunner()
    result = runner.invoke(cli, ["models"], env=env)
    assert result.exit_code == 0, result.output
    assert f"big  llama-server  {servers[0].url}  up  ctx {CTX:,} × 1 slot(s)" in result.output
    result = runner.invoke(cli, ["plan", str(path), "--model", "big"], env=env)
    assert result.exit_code == 0, result.output
    assert f"served context {CTX:,} tokens on {servers[0].url}" in result.output
    result = runner.invoke(cli, ["ask", str(path), "--model", "big", "-q", QUESTION, "--max-tokens", "24"], env=env)
    assert result.exit_code == 0, result.output
    assert PASS_KEY in result.stdout and "(whole; read" in result.output


def test_a_prefix_survives_a_server_restart_in_its_slot_file(tmp_path: Path) -> None:
    """With --slot-save-path, the documents' prefix is saved after it is read and restored into the slot
    after llama-server restarts, so the next question does not read the documents again."""
    model = embedded_model_path(Settings().models_dir)
    slots = tmp_path / "slots"
    slots.mkdir()
    server = LlamaServer(model, tmp_path / "save.log", ctx=CTX, slot_save=slots).start()
    try:
        with TestClient(create_app(remote_settings(tmp_path, [server.url])), base_url=LOOPBACK) as client:
            doc = upload(client, "haystack.txt", haystack(80))
            s = session(client, doc["id"])
            first = ask(client, s["id"])
            assert first.status_code == 200, first.text
            assert first.json()["timings"]["prefix_source"] == "evaluated"
            deadline = time.monotonic() + 30
            while not list(slots.glob("docqa-*.bin")) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(list(slots.glob("docqa-*.bin"))) == 1
            health = client.get("/api/health").json()["details"]["models"]["big"]
            assert health["capabilities"]["state_snapshots"] is True
            server.stop()
            server.start()
            again = ask(client, s["id"], "Say the pass key again.")
            assert again.status_code == 200, again.text
            timings = again.json()["timings"]
            assert timings["prefix_source"] == "restored", timings
            assert timings["cached_tokens"] >= 0.9 * s["plan"]["prompt_tokens"], timings
            snapshots = client.get("/api/health").json()["details"]["models"]["big"]["servers"][0]["snapshots"]
            assert snapshots["saved"] >= 1 and snapshots["restored"] == 1 and snapshots["bytes"] > 0
    finally:
        server.stop()


def test_read_ahead_on_llama_server_and_the_first_question_starts_from_it(tmp_path: Path,
                                                                          servers: list[LlamaServer]) -> None:
    """Opening a session has llama-server read the documents' prefix (n_predict 0, cache_prompt) into a
    slot; the first question is routed to that slot and starts from it (`prefix_source: read-ahead`)."""
    settings = remote_settings(tmp_path, [servers[0].url], read_ahead=True)
    with TestClient(create_app(settings), base_url=LOOPBACK) as c:
        doc = upload(c, "ahead.txt", haystack(70))
        s = session(c, doc["id"])
        deadline = time.monotonic() + 180
        while (sets := c.get("/api/read-ahead").json()["sets"]) and sets[0]["state"] in ("queued", "reading"):
            assert time.monotonic() < deadline, sets
            time.sleep(0.2)
        assert sets and sets[0]["state"] == "done" and sets[0]["tokens_done"] == sets[0]["tokens_total"] > 0, sets
        first = ask(c, s["id"])
        assert first.status_code == 200, first.text
        timings = first.json()["timings"]
        assert timings["prefix_source"] == "read-ahead", timings
        assert timings["cached_tokens"] >= 0.9 * sets[0]["tokens_total"], timings
        assert PASS_KEY in first.json()["answer"]


def test_a_kept_alive_connection_closed_by_the_server_is_replaced_not_failed(tmp_path: Path) -> None:
    """A pooled connection the server closes as it is reused (llama-server ends keep-alive connections after
    5 idle seconds) is sent on again over a new one, once, instead of taking the server out of rotation. A
    real socket server: it answers the first request keep-alive, then closes that connection on the next
    request without answering, and answers on a new connection."""
    import socket

    from docqa.engine.remote.client import Server

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[int] = []
    body = b'{"tokens":[1,2,3]}'
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    def serve() -> None:
        for n in range(2):
            conn, _ = listener.accept()
            connections.append(n)
            with conn:
                conn.recv(65536)
                conn.sendall(reply)
                if n == 0:  # the next request on this connection: closed without an answer
                    conn.recv(65536)
                    conn.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    server = Server(f"http://127.0.0.1:{port}", None, timeout_s=10, probe_s=60)
    try:
        assert server.tokenize("a b c", special=False, add_bos=False) == [1, 2, 3]
        assert server.tokenize("a b c", special=False, add_bos=False) == [1, 2, 3]  # retried on a new connection
        thread.join(10)
        assert connections == [0, 1] and server.state != "down"
    finally:
        server.close()
        listener.close()
