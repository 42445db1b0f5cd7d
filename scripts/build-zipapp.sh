#!/usr/bin/env bash
# Builds dist/kraft.pyz (or the path given): kraft and all its dependencies in one executable
# zipapp (shiv), so `python3 kraft.pyz up` runs a cluster on a machine with only Python 3.11+.
#
# The zipapp holds compiled dependencies (lz4, crc32c, cramjam, orjson, pydantic_core,
# aiohttp's speedups...) built for this machine: it runs on the same OS, CPU architecture and
# Python minor version as the interpreter that built it (e.g. Linux x86_64, CPython 3.11).
# On first run it unpacks into ~/.shiv (or $SHIV_ROOT) and starts from there afterwards.
#
#   PYTHON=.venv/bin/python ./scripts/build-zipapp.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-dist/kraft.pyz}
if ! "$PY" -m shiv --version >/dev/null 2>&1; then
    "$PY" -m pip install --quiet 'shiv>=1.0'
fi
mkdir -p "$(dirname "$OUT")"
# -c kraft: the `kraft` console script; --reproducible: the same sources give the same file.
"$PY" -m shiv --quiet -c kraft -o "$OUT" -p '/usr/bin/env python3' --reproducible \
    --compressed .
echo "built $OUT ($(du -h "$OUT" | cut -f1))"
