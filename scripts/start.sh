#!/usr/bin/env bash
# Sets up a virtualenv from pyproject.toml and starts kraft on 127.0.0.1: with no arguments,
# a local 3-node cluster (`kraft up`: Kafka on 9092-9094, data in ./data/cluster/); otherwise
# `kraft ARGS...` (e.g. `./scripts/start.sh serve`: one node from the packaged config).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
if [ "$#" -eq 0 ]; then
    set -- up --nodes 3 --data-dir ./data/cluster --base-port 9092
fi
exec .venv/bin/kraft "$@"
