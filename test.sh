#!/usr/bin/env bash
# The project's test command: `bash test.sh` (everything, slow tests included) or `bash test.sh -m "not slow"`.
# Needs only python3: it creates .venv and installs requirements.txt the first time (or when they change).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.requirements.txt; then   # (as quickstart.sh)
    echo "== creating .venv and installing requirements.txt (a few minutes the first time)"
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet -r requirements.txt
    cp requirements.txt .venv/.requirements.txt
fi
exec .venv/bin/python -m pytest "$@"
