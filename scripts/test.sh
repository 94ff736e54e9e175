#!/usr/bin/env bash
# The project's test command (README.md and .ci/run call this).
set -uo pipefail
cd "$(dirname "$0")/.."
exec python3 -m pytest -q -ra "$@"
