#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: lit/FileCheck tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
lit -sv test/lit
python -m pytest test/python -q -ra "$@"
