"""The model runs in its own process: real runner processes, killed for real by their pid.

A runner killed with SIGSEGV or SIGKILL while it reads the documents, while it writes a streamed
answer, or while it answers a batch item costs that question (a sentence naming the signal and the
phase, nothing stored) and nothing else: uploads, listings and health go on meanwhile, and the next
question starts a fresh runner. A runner that dies at every start is marked failed instead of
looping; an idle one is unloaded after its keep-alive; none outlives the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from docqa.engine.budget import probe_memory
from docqa.engine.engine import AskOptions, Engine
from docqa.engine.models import ModelRegistry, ModelUnavailable
from docqa.errors import ModelCrashed, ModelFailed
from docqa.settings import Settings
from docqa.store.models import Document, Section
from tests.browser import Server
from tests.support import local_runtime
from tests.test_faults import GARDEN, assert_no_half_answers, gone_within, upload

SERVER_ENV = {"DOCQA_RATE_UPLOADS": "0", "DOCQA_RATE_QUESTIONS": "0", "DOCQA_SEED": "1", "DOCQA_N_BATCH": "64"}
BEDS = "\n".join(f"Bed {n} of the garden grows {('beans', 'kale', 'leeks')[n % 3]} this season." for n in range(1, 60))
ASK = {"question": "What does bed 4 grow?", "max_tokens": 24, "sampling": {"temperature": 0, "seed": 1}}


def runner_of(http: httpx.Client) -> dict[str, Any]:
    return http.get("/api/health").json()["details"]["models"]["default"]["runner"]


def wait_for(predicate: Any, timeout: float = 60.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def events_of(base: str, sid: str, body: dict[str, Any], on_event: Any) -> list[tuple[str, str]]:
    """A streamed question: every (event, data) in order; `on_event(name)` is called as each arrives."""
    seen: list[tuple[str, str]] = []
    with httpx.Client(base_url=base, timeout=120) as http, http.stream(
        "POST", f"/api/sessions/{sid}/questions", json=body, headers={"accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        name = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                seen.append((name, line.partition(":")[2].strip()))
                on_event(name)
    return seen


def assert_service_goes_on(http: httpx.Client, n: int) -> None:
    """What a dead runner must not touch: uploads, listings, reads and health."""
    doc = upload(http, f"notes-{n}.txt", f"Bring gloves on day {n}.\n".encode())
    assert http.get("/api/documents").status_code == 200
    assert http.get(f"/api/documents/{doc['id']}/sections").status_code == 200
    assert http.get("/api/health").status_code == 200


@pytest.fixture
def server(tmp_path: Path) -> Any:
    s = Server(tmp_path / "data", env=SERVER_ENV).start()
    try:
        yield s
    finally:
        s.stop()


def test_sigsegv_while_reading_then_sigkill_while_streaming(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        doc = upload(http, "beds.txt", BEDS.encode())
        sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]

        # 1. SIGSEGV while the documents are read (a plain JSON question): 503 with the sentence
        result: dict[str, httpx.Response] = {}
        asking = threading.Thread(target=lambda: result.update(
            r=httpx.post(f"{server.url}/api/sessions/{sid}/questions", json=ASK, timeout=120)))
        asking.start()
        had_extra_buffers = runner_of(http)["extra_buffers"]
        pid = wait_for(lambda: (r := runner_of(http))["phase"] == "reading" and r["pid"])
        os.kill(pid, signal.SIGSEGV)
        assert_service_goes_on(http, 1)
        asking.join(60)
        r = result["r"]
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/json"), r.text
        assert r.json()["detail"].startswith(
            "The model process ended with SIGSEGV while reading the documents; nothing was stored."), r.text
        assert http.get(f"/api/sessions/{sid}").json()["messages"] == []
        status = runner_of(http)
        assert status["state"] == "restarting" and status["last_exit"] == "SIGSEGV while reading the documents"
        # a native fault while llama.cpp's extra buffer types were in use: the next runner starts without them
        assert status["extra_buffers"] is False
        if had_extra_buffers:  # on this CPU they were in use (not an AMX CPU, where they start off)
            assert status["extra_buffers_reason"].startswith(
                "turned off after the runner ended with SIGSEGV while reading the documents"), status

        # 2. the next question starts a fresh runner and is answered (and snapshots the documents after it)
        first = http.post(f"/api/sessions/{sid}/questions", json=ASK)
        assert first.status_code == 200, first.text
        assert first.json()["timings"]["prefix_source"] == "evaluated"
        status = runner_of(http)
        assert status["state"] == "ready" and status["restarts"] == 1 and status["pid"] != pid
        # its snapshot is copied after the answer and written by the runner's writer thread: wait for the file
        wait_for(lambda: not (r := runner_of(http))["snapshots_writing"] and r["phase"] == "idle")

        # 3. SIGKILL while a streamed answer is being written: an SSE error event, nothing stored
        killed: list[int] = []

        def kill_at_first_token(name: str) -> None:
            if name == "token" and not killed:
                killed.append(runner_of(http)["pid"])
                os.kill(killed[0], signal.SIGKILL)

        seen = events_of(server.url, sid, {**ASK, "question": "List every bed that grows kale."}, kill_at_first_token)
        names = [n for n, _ in seen]
        assert "token" in names and names[-1] == "error" and "done" not in names, names
        assert "SIGKILL while writing the answer; nothing was stored" in seen[-1][1], seen[-1]
        assert_service_goes_on(http, 2)
        assert len(http.get(f"/api/sessions/{sid}").json()["messages"]) == 2  # only the answered question

        # 4. answered again, the documents read back from the snapshot written after step 2
        again = http.post(f"/api/sessions/{sid}/questions", json=ASK)
        assert again.status_code == 200, again.text
        assert again.json()["timings"]["prefix_source"] == "disk"
        assert again.json()["answer"] == first.json()["answer"]
        status = runner_of(http)
        assert status["restarts"] == 2 and status["last_exit"] == "SIGKILL while writing the answer"
    assert assert_no_half_answers(server.data_dir) == 4


def test_runner_killed_during_a_batch_item_is_retried_and_each_item_answered_once(server: Server) -> None:
    questions = ["What does bed 4 grow?", "What does bed 5 grow?", "What does bed 6 grow?"]
    with httpx.Client(base_url=server.url, timeout=120) as http:
        doc = upload(http, "beds.txt", BEDS.encode())
        created = http.post("/api/batches", json={"document_ids": [doc["id"]], "questions": questions,
                                                  "max_tokens": 8})
        assert created.status_code == 202, created.text
        bid = created.json()["id"]
        pid = wait_for(lambda: (r := runner_of(http))["phase"] in ("reading", "writing") and r["pid"])
        os.kill(pid, signal.SIGKILL)
        assert_service_goes_on(http, 1)
        done = wait_for(lambda: (b := http.get(f"/api/batches/{bid}").json())["status"] in ("done", "failed") and b,
                        timeout=180, every=0.5)
        assert done["status"] == "done", done
        results = http.get(f"/api/batches/{bid}/results").json()
        assert sorted(r["question"] for r in results) == sorted(questions)
        assert all(r["status"] == "done" and r["answer"] for r in results), results
        assert sorted(r["attempts"] for r in results) == [1, 1, 2], results  # the killed item went back once
        assert runner_of(http)["restarts"] == 1


def test_a_runner_never_outlives_the_server(tmp_path: Path) -> None:
    for stop in ("SIGKILL", "SIGTERM"):
        server = Server(tmp_path / stop, env=SERVER_ENV).start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                doc = upload(http, "garden.txt", GARDEN)
                sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
                assert http.post(f"/api/sessions/{sid}/questions", json={**ASK, "max_tokens": 2}).status_code == 200
                runner = psutil.Process(runner_of(http)["pid"])
            assert server.proc is not None
            os.kill(server.proc.pid, getattr(signal, stop))
            server.proc.wait(20)
            assert gone_within([runner], 1.5) == [], f"the runner outlived a {stop} of its server"
        finally:
            server.stop()


def test_a_killed_parse_process_is_replaced(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        upload(http, "garden.txt", GARDEN)
        assert server.proc is not None
        forkservers = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                       if "forkserver" in " ".join(p.cmdline())]
        assert forkservers, "the parse sandbox's forkserver was not found"
        for p in forkservers:
            p.kill()
        assert gone_within(forkservers, 5) == []
        assert upload(http, "bakery.txt", b"The bakery opens at 6 a.m.\n")["n_sections"] == 1
        assert len(http.get("/api/documents").json()) == 2


# --- in-process engine: crash loop, keep-alive, a model truncated under its memory map -------------------


def beds_sources() -> list[tuple[Document, list[Section]]]:
    doc = Document(id="d", filename="beds.txt", kind="text")
    return [(doc, [Section(id=1, ordinal=0, path=None, line_start=1, line_end=59, text=BEDS)])]


def engine_for(tmp_path: Path, **overrides: Any) -> tuple[Engine, Any]:
    settings = Settings(data_dir=tmp_path / "data", seed=1, **overrides)
    registry = ModelRegistry(settings)
    return Engine(settings, registry), registry.get(None)


OPTS = AskOptions(max_tokens=4, sampling={"temperature": 0, "seed": 1})


def test_a_runner_that_crashes_at_every_start_is_marked_failed_not_looped(tmp_path: Path) -> None:
    model = tmp_path / "smol.gguf"
    shutil.copyfile(ModelRegistry(Settings()).get(None).path, model)
    engine, spec = engine_for(tmp_path, model=str(model))
    sources = beds_sources()
    plan = engine.plan(spec, sources)
    runtime = local_runtime(engine, spec)
    runtime.fault = "start"
    try:
        for _ in range(2):
            with pytest.raises(ModelCrashed) as crashed:
                engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS)
            assert crashed.value.status_code == 503
            assert crashed.value.detail.startswith("The model process ended with SIGSEGV while starting;")
        with pytest.raises(ModelFailed) as failed:
            engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS)
        assert failed.value.status_code == 503
        assert failed.value.detail == (
            "The model 'default' is stopped: its process ended 3 times within 60 seconds (last: SIGSEGV while "
            "starting). docqa will not start it again until its model file changes or docqa restarts.")
        health = engine.model_health(spec)
        assert health["runner"]["state"] == "failed" and health["runner"]["failed"] == failed.value.detail
        # refused at once from now on: no fourth process is started
        with pytest.raises(ModelFailed):
            engine.reserve(spec)
        assert engine.model_health(spec)["runner"]["restarts"] == 0

        # the model file changes (here: copied back over itself): it may be started again, and answers
        runtime.fault = None
        shutil.copyfile(ModelRegistry(Settings()).get(None).path, model)
        answer = engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS)
        assert answer.answer and engine.model_health(spec)["runner"]["state"] == "ready"
    finally:
        engine.close()


def test_an_idle_runner_is_unloaded_after_its_keep_alive_and_loaded_again(tmp_path: Path) -> None:
    engine, spec = engine_for(tmp_path, model_keep_alive="1s")
    sources = beds_sources()
    plan = engine.plan(spec, sources)
    try:
        first = engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS)
        status = engine.model_health(spec)["runner"]
        assert status["state"] == "ready" and status["resident_bytes"] > 10 * 2**20
        runner = psutil.Process(status["pid"])
        # a loaded runner's memory is counted as free when planning for its own model (it gives it back first)
        held, probed = engine.backend(spec).resources().resident_bytes, probe_memory(None)
        memory = engine.backend(spec).resources().memory
        assert probed.mem_available is not None and memory is not None and memory.mem_available is not None
        assert memory.mem_available - probed.mem_available > held // 2
        wait_for(lambda: engine.model_health(spec)["runner"]["state"] == "unloaded", timeout=10, every=0.2)
        assert gone_within([runner], 2) == [] and engine.model_health(spec)["loaded"] is False
        assert engine.backend(spec).resources().resident_bytes == 0
        again = engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS)
        assert again.timings["prefix_source"] == "disk" and again.answer == first.answer
        assert engine.model_health(spec)["runner"]["pid"] not in (None, runner.pid)
    finally:
        engine.close()


def test_preload_loads_the_default_model_at_start_and_the_first_question_does_not_load_it(tmp_path: Path) -> None:
    """DOCQA_PRELOAD (the default outside the test suite): the runner is started with the server, as
    llama-server loads its model, so the first question finds it ready; a server without it loads on demand."""
    s = Server(tmp_path / "data", env={**SERVER_ENV, "DOCQA_PRELOAD": "true"}).start()
    try:
        with httpx.Client(base_url=s.url, timeout=120) as http:
            health = lambda: http.get("/api/health").json()["details"]["models"]["default"]  # noqa: E731
            wait_for(lambda: health()["runner"]["state"] == "ready", timeout=60, every=0.2)
            pid = health()["runner"]["pid"]
            assert psutil.Process(pid).is_running() and health()["loaded"] is True
            doc = upload(http, "beds.txt", b"Bed 4 grows leeks.\nBed 5 grows beans.\n")
            sid = http.post("/api/sessions", json={"document_ids": [doc["id"]]}).json()["id"]
            r = http.post(f"/api/sessions/{sid}/questions", json={"question": "What does bed 4 grow?",
                                                                   "max_tokens": 8, "stream": False})
            assert r.status_code == 200, r.text
            runner = health()["runner"]
            assert runner["pid"] == pid and runner["starts"] == 1  # the question used the preloaded runner
    finally:
        s.stop()
    cold = Server(tmp_path / "data2", env={**SERVER_ENV, "DOCQA_PRELOAD": "false"}).start()
    try:
        time.sleep(1.0)
        runner = httpx.get(f"{cold.url}/api/health", timeout=30).json()["details"]["models"]["default"]["runner"]
        assert runner["pid"] is None and runner["starts"] == 0
    finally:
        cold.stop()


def test_a_model_truncated_under_its_memory_map_mid_question_costs_that_question_only(tmp_path: Path) -> None:
    """The SIGBUS case: a memory-mapped GGUF cut short while a question reads kills the runner, not docqa."""
    model = tmp_path / "smol.gguf"
    shutil.copyfile(ModelRegistry(Settings()).get(None).path, model)
    engine, spec = engine_for(tmp_path, model=str(model), n_batch=32, state_cache_bytes=0)
    sources = beds_sources()
    plan = engine.plan(spec, sources)
    seen: list[dict[str, Any]] = []

    def truncate_midway(kind: str, payload: dict[str, Any]) -> None:
        if kind == "progress" and not seen:
            seen.append(payload)
            with model.open("r+b") as fh:
                fh.truncate(model.stat().st_size // 3)  # in place, as `cp new.gguf smol.gguf` does

    try:
        with pytest.raises(ModelCrashed) as crashed:
            engine.answer(spec, plan, sources, "What does bed 4 grow?", OPTS, on_event=truncate_midway)
        assert "SIGBUS while reading the documents" in crashed.value.detail, crashed.value.detail
        with pytest.raises(ModelUnavailable) as refused:
            engine.answer(spec, plan, sources, "What does bed 5 grow?", OPTS)
        assert "truncated" in refused.value.detail
    finally:
        engine.close()


def test_health_and_models_say_which_cpu_features_llama_cpp_uses(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        runner = runner_of(http)
    assert runner["state"] == "unloaded" and runner["pid"] is None and runner["restarts"] == 0
    assert "CPU :" in runner["system_info"] and "AVX" in runner["system_info"]
    assert isinstance(runner["extra_buffers"], bool) and runner["extra_buffers_reason"]
    import subprocess

    from tests.browser import docqa_command

    out = subprocess.run([*docqa_command(), "models"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DOCQA_DATA_DIR": str(server.data_dir)})
    assert out.returncode == 0, out.stderr
    assert "llama.cpp: CPU :" in out.stdout and "extra buffer types" in out.stdout, out.stdout


# --- which CPUs get llama.cpp's extra buffer types --------------------------------------------------------

AVX2_INFO = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | REPACK = 1 |"
AMX_INFO = ("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
            "REPACK = 1 |")


def test_extra_buffer_types_are_off_on_amx_cpus_and_on_elsewhere() -> None:
    from docqa.engine.local import cpu

    assert cpu.features(AMX_INFO)["AMX_INT8"] is True and cpu.features(AVX2_INFO)["AVX2"] is True
    assert cpu.has_amx(AMX_INFO, set()) is True
    assert cpu.has_amx(AVX2_INFO, {"avx2", "fma"}) is False
    assert cpu.has_amx(AVX2_INFO, {"avx2", "amx_int8", "amx_tile"}) is True  # a wheel built without AMX, on an AMX CPU
    assert cpu.use_extra_buffers("auto", amx=True) == (
        False, "this CPU has AMX, whose ggml kernels crash in this llama.cpp; weight repacking is off too")
    assert cpu.use_extra_buffers("auto", amx=False)[0] is True
    assert cpu.use_extra_buffers("on", amx=True)[0] is True and cpu.use_extra_buffers("off", amx=False)[0] is False
    # this machine, as llama.cpp reports it
    info = cpu.system_info()
    assert info.startswith("CPU :") and cpu.use_extra_buffers("auto")[0] is not cpu.has_amx()
    with pytest.raises(ValueError, match="DOCQA_EXTRA_BUFFERS takes auto, on or off"):
        Settings(extra_buffers="sometimes")
    assert Settings(model_keep_alive="5m").model_keep_alive == 300
    assert Settings(model_keep_alive="0").model_keep_alive == 0


def test_extra_buffer_types_really_switch_off_in_llama_cpp() -> None:
    """llama.cpp's own load log: with extra buffer types on it prefers one for the weights (CPU_REPACK,
    which declines SmolLM2's Q4_1/Q8_0 tensors and repacks a Q4_K model's; on a build with AMX, AMX
    tiles, which take most of them); off, it never does. Only loads: AMX would crash at a decode."""
    import subprocess
    import sys

    from docqa.engine.local import cpu

    model = ModelRegistry(Settings()).get(None).path
    logs = {}
    for extra in (True, False):
        code = ("from docqa.engine.local.runner import new_llama; "
                f"new_llama(dict(model_path={str(model)!r}, n_ctx=256, verbose=True), extra_buffers={extra}).close()")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        logs[extra] = out.stderr
    kind = "AMX" if cpu.has_amx(cpu.system_info(), flags=set()) else "CPU_REPACK"  # what the build reports
    assert f"preferred buffer type {kind}" in logs[True], logs[True][-2000:]
    assert "preferred buffer type" not in logs[False]  # every tensor goes to plain CPU buffers
    assert "CPU_REPACK" not in logs[False] and "AMX model buffer" not in logs[False]
