#!/usr/bin/env bash
# Set up (if needed) and compile the default model (Llama-3.2-1B shapes) to a megakernel bundle in etc-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
exec .venv/bin/etc compile "$@"
