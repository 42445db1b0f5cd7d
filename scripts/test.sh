#!/usr/bin/env bash
# Sets up a virtualenv from pyproject.toml, then runs lint (ruff), type checks (mypy), the
# layering contracts (import-linter) and the default test suite. Used verbatim by CI (.ci/run).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== layering contracts (import-linter)"
.venv/bin/lint-imports
# The dashboard's browser test needs Debian's chromium and its driver (CI runs as root).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "== installing chromium and chromium-driver"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium chromium-driver >/dev/null
fi
echo "== pytest"
.venv/bin/pytest -q "$@"
