#!/usr/bin/env bash
# Make the project's virtualenv (.venv) on a fresh machine: a Python >= 3.11 with venv (from
# Debian's packages when missing), then the project and its dev tools from PyPI; then what
# the observer's BPF mode and the tests need from Debian (scripts/bpf_setup.sh).
# Idempotent; `make` calls it whenever pyproject.toml is newer than the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: need $*, and this machine has no apt-get; install them and retry" >&2
    exit 1
  fi
  echo "bootstrap: installing $* (apt)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  apt_install python3 python3-venv
  PYTHON=/usr/bin/python3
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    apt_install python3-venv
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
VENV=$VENV scripts/bpf_setup.sh
echo "bootstrap: $VENV ready ($("$VENV/bin/python" --version))" >&2
