#!/usr/bin/env bash
# The project's test command: `bash test.sh` (everything, slow tests included) or `bash test.sh -m "not slow"`.
# Needs only python3: setup.sh creates .venv the first time (or when requirements.txt changes).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
exec .venv/bin/python -m pytest "$@"
