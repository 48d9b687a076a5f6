"""What pulling and finding models cost: `python -m bench.run pull` → bench/results/pull.json.

Pull: the embedded GGUF (~95 MB) from the loopback hub of the tests (tests/fake_hub.py), three ways in
alternating rounds on one machine: docqa's pull (huggingface_hub's API call, HEAD and http_get into a
.part file, then the whole file's sha256, fsync and a rename), huggingface_hub's own `hf_hub_download`
to a local folder (the library's default path, no checksum), and a bare httpx stream to a file (the
floor). Ratios are against the bare stream, medians over the rounds.

Discovery: a temporary HOME holding N models in Ollama's, LM Studio's and the Hugging Face cache's
layouts (hard links of the embedded GGUF: distinct paths); the time to build the registry with
discovery on ÷ off (what every `docqa` command and the server's start pay), and a rescan once the
headers are known (what GET /api/models pays every 5 s at most).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import write


def bench_pull(rounds: int = 3) -> None:
    import httpx
    from huggingface_hub import hf_hub_download

    from docqa.fetch import embedded_model_path, fetch_embedded_model
    from docqa.pull import Hub, Ref, download, resolve
    from docqa.settings import Settings
    from tests.fake_hub import FakeHub, HubFile

    model = embedded_model_path(Settings().models_dir)
    model = model if model.is_file() else fetch_embedded_model(Settings().models_dir)
    repo = "bench/SmolLM2-GGUF"
    hub = FakeHub(repo, [HubFile("SmolLM2-Q4_1.gguf", model)]).start()
    h = Hub(hub.endpoint, None, False)
    times: dict[str, list[float]] = {"docqa_pull": [], "hf_hub_download": [], "httpx_stream": []}
    try:
        for _ in range(rounds):
            for way in times:
                with tempfile.TemporaryDirectory() as tmp:
                    started = time.perf_counter()
                    if way == "docqa_pull":
                        download(resolve(Ref.parse(f"hf:{repo}:Q4_1"), h), h, Path(tmp))
                    elif way == "hf_hub_download":
                        hf_hub_download(repo, "SmolLM2-Q4_1.gguf", local_dir=tmp, endpoint=hub.endpoint,
                                        cache_dir=os.path.join(tmp, "cache"))
                    else:
                        with httpx.stream("GET", f"{hub.endpoint}/cdn/{hub.files[0].sha256}") as r, \
                                open(os.path.join(tmp, "f.gguf"), "wb") as fh:
                            for chunk in r.iter_bytes(1 << 20):
                                fh.write(chunk)
                    times[way].append(time.perf_counter() - started)
    finally:
        hub.stop()
    size = model.stat().st_size
    floor = statistics.median(times["httpx_stream"])
    result: dict[str, Any] = {
        "file_bytes": size, "rounds": rounds,
        "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "mb_per_s": {k: round(size / statistics.median(v) / 1e6, 1) for k, v in times.items()},
        "ratio_to_httpx_stream": {k: round(statistics.median(v) / floor, 2) for k, v in times.items()},
    }
    result["discovery"] = _discovery()
    write("pull", result)


def _discovery(n_each: int = 4, runs: int = 3) -> dict[str, Any]:
    from docqa.engine import discovery
    from docqa.engine.models import ModelRegistry
    from docqa.fetch import embedded_model_path
    from docqa.settings import Settings
    from tests.model_layouts import hf_cache_file, ollama_model, place

    model = embedded_model_path(Settings().models_dir)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for i in range(n_each):
            blob = place(model, Path(tmp) / f"copy{i}.gguf")  # a distinct inode per model: no de-duplication
            ollama_model(home / ".ollama" / "models", f"m{i}", "latest", blob)
            place(model, home / ".lmstudio" / "models" / "pub" / f"repo{i}" / f"m{i}-Q4_1.gguf")
            hf_cache_file(home / ".cache" / "huggingface" / "hub", f"org/repo{i}", f"m{i}-Q4_1.gguf", model)
        env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE",
                                                                  "LLAMA_CACHE", "XDG_CACHE_HOME")}
        old_env = dict(os.environ)
        os.environ.clear()
        os.environ.update({**env, "HOME": str(home)})
        try:
            on = Settings(data_dir=Path(tmp) / "d", discover_models=True)
            off = Settings(data_dir=Path(tmp) / "d", discover_models=False)

            def build(settings: Settings, fresh: bool) -> float:
                if fresh:
                    discovery._HEADERS.clear()
                started = time.perf_counter()
                ModelRegistry(settings)
                return time.perf_counter() - started

            t_on, t_off, t_cached = [], [], []
            for _ in range(runs):  # alternating
                t_on.append(build(on, True))
                t_off.append(build(off, False))
                t_cached.append(build(on, False))
            registry = ModelRegistry(on)
            found = len(registry.specs) - 1
            discovery._last_rescan.clear()
            started = time.perf_counter()
            discovery.rescan(registry, on)
            rescan_s = time.perf_counter() - started
        finally:
            os.environ.clear()
            os.environ.update(old_env)
        shutil.rmtree(home, ignore_errors=True)
    return {"models_found": found, "registry_s_discovery_on": round(statistics.median(t_on), 3),
            "registry_s_discovery_off": round(statistics.median(t_off), 3),
            "registry_s_headers_known": round(statistics.median(t_cached), 3),
            "per_model_ms": round((statistics.median(t_on) - statistics.median(t_off)) / max(found, 1) * 1000, 1),
            "rescan_s_headers_known": round(rescan_s, 4)}
