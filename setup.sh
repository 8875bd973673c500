#!/usr/bin/env bash
# Creates .venv from requirements.txt when it is missing or the requirements changed. Needs only python3.
# Used by test.sh and quickstart.sh.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.requirements.txt; then
    echo "== creating .venv and installing requirements.txt (a few minutes the first time)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet -r requirements.txt
    cp requirements.txt .venv/.requirements.txt
fi
