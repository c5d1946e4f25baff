#!/usr/bin/env bash
# One command for a new user: set everything up, then run `mmops doctor` on a real model
# (the tiny generated Qwen2.5-VL, served by the real vLLM CPU build in the tiny-cpu profile).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/mmops doctor --profile tiny-cpu "$@"
