#!/usr/bin/env bash
# Sets up a virtualenv from pyproject.toml and starts kraft on 127.0.0.1: with no arguments,
# one node from config/server.properties (data in ./data/); otherwise `kraft ARGS...`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
if [ "$#" -eq 0 ]; then
    set -- serve --config config/server.properties
fi
exec .venv/bin/kraft "$@"
