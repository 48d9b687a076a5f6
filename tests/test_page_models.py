"""The page's models (issue 25) in Debian's Chromium against a real `docqa serve`: the picker grouped by
where each model was found (an Ollama store and a Hugging Face cache built in a temporary HOME holding
the embedded GGUF), the Models tab's table of what fits (checked against GET /api/models/recommend, the
budget manager's own arithmetic), and pulling by name with the real huggingface_hub from the hub on
loopback (tests/fake_hub.py): progress, a refused name, a wrong checksum, a cancel resumed, then the
pulled model chosen. A server with API keys offers no Pull button to a principal who may not pull.
No test reaches a real hub: HF_ENDPOINT names the loopback one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docqa.fetch import embedded_model_path, fetch_embedded_model
from docqa.settings import Settings
from tests.browser import CHROMIUM, Server, new_page
from tests.browser import REPO as CHECKOUT
from tests.fake_hub import FakeHub, HubFile
from tests.model_layouts import hf_cache_file, ollama_model, sha256_of

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
expect = playwright_sync.expect

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs it (apt-get install chromium)"
)

REPO = "someone/SmolLM2-135M-Instruct-GGUF"
GGUF = "SmolLM2-135M-Instruct-Q4_1.gguf"
NAME = f"hf:{REPO}:Q4_1"
PULL_WAIT_MS = 180_000  # 98 MB hashed and written on a busy 2-core machine
# what would point the server at a real hub, a real model folder or a real key
OUTSIDE = ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "LLAMA_CACHE", "OLLAMA_MODELS", "XDG_CACHE_HOME",
           "LMSTUDIO_HOME", "DOCQA_MODEL_DIRS", "DOCQA_API_KEYS", "DOCQA_MODEL_MANAGERS")


@pytest.fixture(scope="module")
def embedded() -> Path:
    path = embedded_model_path(Settings().models_dir)
    return path if path.is_file() else fetch_embedded_model(Settings().models_dir)


@pytest.fixture(scope="module")
def hub(embedded: Path) -> Iterator[FakeHub]:
    server = FakeHub(REPO, [HubFile(GGUF, embedded)]).start()
    try:
        yield server
    finally:
        server.stop()


def serve(root: Path, embedded: Path, hub: FakeHub, **env: str) -> Server:
    """`docqa serve` with a HOME holding an Ollama store and a Hugging Face cache, its own models folder, and
    the loopback hub."""
    home = root / "home"
    ollama_model(home / ".ollama" / "models", "smollm2", "135m", embedded)
    hf_cache_file(home / ".cache" / "huggingface" / "hub", "someone/Other-GGUF", "Other-Q4_1.gguf", embedded)
    srv = Server(root / "data", env={"HOME": str(home), "DOCQA_MODEL": str(embedded), "DOCQA_SEED": "1",
                                     "DOCQA_DISCOVER_MODELS": "true",
                                     "DOCQA_MODELS_DIR": str(root / "models"), "HF_ENDPOINT": hub.endpoint, **env})
    for name in OUTSIDE:
        if name not in env:
            srv.env.pop(name, None)
    return srv.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedded: Path, hub: FakeHub) -> Iterator[Server]:
    srv = serve(tmp_path_factory.mktemp("page-models"), embedded, hub)
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context, pg, problems = new_page(browser, server)
    yield pg
    context.close()
    # a refused pull logs "Failed to load resource … 404"; anything else (a CSP violation, a script error) fails
    unexpected = [p for p in problems if "Failed to load resource" not in p]
    assert not unexpected, unexpected


def save_shot(page: Any, name: str) -> None:
    """docs/NAME for the README, when DOCQA_UPDATE_SCREENSHOT is set."""
    if os.environ.get("DOCQA_UPDATE_SCREENSHOT"):
        page.screenshot(path=str(CHECKOUT / "docs" / name), full_page=False)


def open_page(page: Any) -> None:
    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def open_models_tab(page: Any) -> None:
    page.click("#models-link")
    expect(page.locator("#tab-models")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#fit-table")).to_be_visible()


def api_models(server: Server) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in httpx.get(f"{server.url}/api/models").json()}


def text_fits(page: Any, selector: str) -> bool:
    """Whether a select's chosen text fits inside it (its arrow and padding aside), as drawn in its own font."""
    return bool(page.locator(selector).evaluate("""s => {
        const c = document.createElement('canvas').getContext('2d');
        const st = getComputedStyle(s);
        c.font = `${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
        const text = s.options[s.selectedIndex].text;
        const room = s.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight) - 20;
        return c.measureText(text).width <= room;
    }"""))


# ---- the picker: where each model was found ------------------------------------------------------------


def test_picker_says_where_each_model_was_found(page: Any, server: Server) -> None:
    models = api_models(server)
    ollama = next(m for m in models.values() if m.get("source") == "Ollama")
    assert ollama["where"] == "Ollama: smollm2:135m" and ollama["error"] is None, ollama
    assert any(m.get("source") == "Hugging Face" for m in models.values()), models
    open_page(page)
    groups = page.locator("#model optgroup")
    expect(groups).to_have_count(3)
    assert set(groups.evaluate_all("gs => gs.map(g => g.label)")) == {"Configured", "Ollama", "Hugging Face"}
    option = page.locator("#model optgroup[label=Ollama] option")
    expect(option).to_have_text("smollm2:135m · 135M · Q4_1")
    page.select_option("#model", ollama["name"])
    about = page.locator("#model-about")
    expect(about).to_contain_text("Found in Ollama: smollm2:135m")
    for words in ("135M parameters", "Q4_1", "98 MB of weights", "llama", "8,192 ctx (trained)"):
        expect(about).to_contain_text(words)
    assert text_fits(page, "#model")
    # the narrowest side column (a source open beside the answer): the chosen model's entry still fits
    page.select_option("#model", "default")
    page.get_by_role("button", name=re.compile("bring a GGUF")).click()
    expect(page.locator(".layout")).to_have_class(re.compile("has-viewer"))
    assert text_fits(page, "#model"), page.locator("#model").evaluate(
        "s => [s.clientWidth, s.options[s.selectedIndex].text]")
    # the Models tab lists each with where it was found; Use chooses it in the picker
    page.click("#viewer-close")
    open_models_tab(page)
    entry = page.locator("#models-list li", has_text="smollm2:135m")
    expect(entry).to_contain_text("Found in Ollama: smollm2:135m")
    entry.get_by_role("button", name=f"Use {ollama['name']}").click()
    expect(page.locator("#tab-ask")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#model")).to_have_value(ollama["name"])
    expect(page.locator("#model")).to_be_focused()


# ---- what fits this machine --------------------------------------------------------------------------------


def table_against_api(page: Any, server: Server, tokens: int, memory: str | None) -> None:
    params: dict[str, Any] = {"tokens": tokens, **({"memory": memory} if memory else {})}
    want = httpx.get(f"{server.url}/api/models/recommend", params=params, timeout=60).json()
    expect(page.locator("#fit-doc-h")).to_have_text(f"A {tokens:,}-token document")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in want["rows"]:
        groups.setdefault((r["model"], r["quant"]), []).append(r)
    rows = page.locator("#fit-table tr[data-quant]")
    expect(rows).to_have_count(len(groups))
    for (model, quant), rs in groups.items():
        row = page.locator(f'#fit-table tr[data-model="{model}"][data-quant="{quant}"]')
        verdict = row.locator("td.verdict").inner_text()
        fits = [r for r in rs if r["fits"]]
        assert verdict.startswith("✓" if fits else "✗"), (model, quant, verdict, rs)
        if fits:  # the best-kept cache that fits, with the memory the budget manager says it needs
            best = next(r for r in sorted(rs, key=lambda r: ["f16", "q8_0", "q4_0"].index(r["cache_type"]))
                        if r["fits"])
            assert f"a {best['cache_type']} KV cache" in verdict
            assert f"needs {best['needed_bytes'] / 1e9:.1f} GB of {best['available_bytes'] / 1e9:.1f} GB" in verdict
        cells = row.locator(".kv-list li").all_inner_texts()
        for r in rs:
            longest = f"{r['longest_whole_tokens']:,} tokens" if r["longest_whole_tokens"] else "none"
            assert f"{r['cache_type']} {longest}" in [" ".join(c.split()) for c in cells], (model, quant, cells, r)


def test_what_fits_table_follows_the_budget_manager(page: Any, server: Server) -> None:
    open_page(page)
    open_models_tab(page)
    expect(page.locator("#fit-summary")).to_contain_text(re.compile(r"this machine: [\d.]+ GB available"))
    # this machine's free memory moves between two readings on a shared machine: the numbers are compared for
    # machines of a given size below; here every model and quantization the budget manager rated has its row
    rated = {(r["model"], r["quant"]) for r in httpx.get(f"{server.url}/api/models/recommend",
                                                          params={"tokens": 131_072}, timeout=60).json()["rows"]}
    expect(page.locator("#fit-table tr[data-quant]")).to_have_count(len(rated))
    page.select_option("#fit-memory", "32G")
    expect(page.locator("#fit-summary")).to_contain_text("on a machine with 32.0 GB")
    table_against_api(page, server, 131_072, "32G")
    # the model on disk and the known ones not yet downloaded, each saying which it is
    expect(page.locator('#fit-table tbody[data-model="default"] .model-head')).to_contain_text("on this server")
    expect(page.locator('#fit-table tbody[data-model="Qwen3-4B-Instruct-2507"] .model-head')).to_contain_text(
        "not downloaded")
    expect(page.locator("#fit-sources a")).not_to_have_count(0)
    page.select_option("#fit-tokens", "32768")
    page.select_option("#fit-memory", "8G")
    expect(page.locator("#fit-summary")).to_contain_text("A 32,768-token document on a machine with 8.0 GB")
    table_against_api(page, server, 32_768, "8G")
    big = page.locator('#fit-table tr[data-model="Qwen3-30B-A3B-Instruct-2507"][data-quant="Q8_0"] td.verdict')
    expect(big).to_contain_text("✗ Does not fit")
    expect(big).to_contain_text("no document fits beside these weights")
    # a pull is one click from a row (loopback mode: whoever uses the page may manage models)
    expect(page.locator("#fit-table tr[data-quant=Q4_K_M] button.pull").first).to_be_visible()


def test_the_table_at_360_px_needs_no_sideways_scroll(browser: Any, server: Server) -> None:
    context, page, problems = new_page(browser, server, width=360, height=740)
    try:
        open_page(page)
        page.click("#tab-models")
        expect(page.locator("#fit-table")).to_be_visible()
        table = page.locator("#fit-table")
        assert table.evaluate("t => t.scrollWidth <= t.clientWidth + 1"), table.evaluate(
            "t => [t.scrollWidth, t.clientWidth]")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        button = page.locator("#fit-table button.pull").first
        box = button.bounding_box()
        assert box and box["x"] + box["width"] <= 360
    finally:
        context.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


# ---- pulling by name ----------------------------------------------------------------------------------------


def pull_item(page: Any) -> Any:
    return page.locator("#pulls li.pull-item").first


def test_a_refused_name_and_a_wrong_checksum_are_sentences(page: Any, server: Server, hub: FakeHub) -> None:
    open_page(page)
    open_models_tab(page)
    page.fill("#pull-name", f"hf:{REPO}:Q2_K")
    page.click("#pull-button")
    expect(page.locator("#pull-status")).to_contain_text("has no Q2_K quantization")
    expect(page.locator("#pull-status")).to_have_class(re.compile("error"))
    page.fill("#pull-name", "hf:nobody/x")
    page.click("#pull-button")
    expect(page.locator("#pull-status")).to_contain_text("There is no repository")
    hub.lie_sha256 = True
    try:
        page.fill("#pull-name", NAME)
        page.click("#pull-button")
        expect(pull_item(page)).to_have_class(re.compile("failed"), timeout=PULL_WAIT_MS)
        expect(pull_item(page).locator(".pull-words")).to_contain_text("sha256")
        expect(pull_item(page).get_by_role("button", name="Try again")).to_be_visible()
    finally:
        hub.lie_sha256 = False
    assert NAME not in api_models(server)


def test_a_pull_with_progress_cancelled_resumed_then_chosen(page: Any, server: Server, hub: FakeHub) -> None:
    hub.chunk_delay_s = 0.01  # ~15 s for the whole file: time to see it come and to cancel it
    try:
        open_page(page)
        open_models_tab(page)
        page.fill("#pull-name", NAME)
        page.click("#pull-button")
        item = pull_item(page)
        expect(item.locator(".pull-ref")).to_have_text(NAME)
        expect(item.locator(".pull-words")).to_contain_text(re.compile(r"Downloading: [\d.]+ [MG]B of 98 MB"))
        expect(item.locator(".pull-words")).to_contain_text(re.compile(r"[KM]B/s · about .+ left"))
        expect(item.locator("progress")).to_be_visible()
        expect(item.locator(".fit")).to_contain_text("Before downloading: someone/SmolLM2-135M-Instruct-GGUF Q4_1")
        item.get_by_role("button", name="Cancel").click()
        expect(item).to_have_class(re.compile("cancelled"), timeout=30_000)
        expect(item.locator(".pull-words")).to_contain_text("Stopped at")
        hub.chunk_delay_s = 0.0
        before = len(hub.requests)
        item.get_by_role("button", name="Resume").click()
        expect(item).to_have_class(re.compile("done"), timeout=PULL_WAIT_MS)
        expect(item.locator(".pull-words")).to_contain_text(f"sha256 checked. It is in the model picker as {NAME}")
    finally:
        hub.chunk_delay_s = 0.0
    resumed = [r for m, p, r in hub.requests[before:] if m == "GET" and p.startswith("/cdn/") and r
               and not r.startswith("bytes=0-")]
    assert resumed, f"the second pull did not resume: {hub.requests[before:]}"
    landed = Path(server.env["DOCQA_MODELS_DIR"]) / "hf" / REPO / GGUF
    assert sha256_of(landed) == sha256_of(Path(server.env["DOCQA_MODEL"]))
    # the only step left is choosing it: the picker has it, with where it came from
    expect(page.locator(f'#model option[value="{NAME}"]')).to_have_count(1)
    page.locator("#pull-h").scroll_into_view_if_needed()
    save_shot(page, "page-models.png")
    item.get_by_role("button", name="Use it").click()
    expect(page.locator("#tab-ask")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#model")).to_have_value(NAME)
    expect(page.locator("#model-about")).to_contain_text(f"Found in docqa: {REPO} Q4_1")
    assert api_models(server)[NAME]["where"] == f"docqa: {REPO} Q4_1"


# ---- who may pull -------------------------------------------------------------------------------------------


def test_no_pull_button_for_whoever_may_not_manage_models(browser: Any, tmp_path: Path, embedded: Path,
                                                          hub: FakeHub) -> None:
    before = len(hub.requests)
    srv = serve(tmp_path, embedded, hub, DOCQA_API_KEYS="alice:key-alice-123456,bob:key-bob-1234567",
                DOCQA_MODEL_MANAGERS="alice")
    try:
        context, page, problems = new_page(browser, srv)
        try:
            page.goto("/")
            page.fill("#api-key", "key-bob-1234567")
            page.click("#api-key-button")
            expect(page.locator("#access")).to_be_hidden()
            open_models_tab(page)
            expect(page.locator("#pull-access")).to_contain_text("ask them to pull one")
            assert "DOCQA_" not in page.locator("#pull-access").inner_text()  # no operator setting to a reader
            expect(page.locator("#pull-form")).to_be_hidden()
            expect(page.locator("#fit-table button.pull")).to_have_count(0)
            expect(page.locator("#fit-table code.command").first).to_have_text(re.compile(r"^docqa pull hf:"))
            # alice may: her page offers the buttons
            page.evaluate("sessionStorage.setItem('docqa.apiKey', 'key-alice-123456')")
            page.reload()
            open_models_tab(page)
            expect(page.locator("#pull-form")).to_be_visible()
            expect(page.locator("#fit-table button.pull").first).to_be_visible()
        finally:
            context.close()
        assert not [p for p in problems if "Failed to load resource" not in p], problems
        assert not [r for r in hub.requests[before:] if r[1].startswith("/cdn/")], "nothing was downloaded"
    finally:
        srv.stop()
