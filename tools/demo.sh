#!/usr/bin/env bash
# Set up (if needed) and compile the default model as far as the pipeline goes, showing what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec .venv/bin/etc compile "$@"
