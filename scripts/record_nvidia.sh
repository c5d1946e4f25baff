#!/usr/bin/env bash
# Record real NVIDIA outputs on a lent GPU machine, for tests/fixtures/nvidia-smi/ and the CUDA
# failure lines that `diagnose` reads. Run from the repo root on that machine; it writes one
# archive, $OUT/nvidia-record.tar.gz (the device tool returns at most 8 files).
#
# Records: nvidia-smi (plain, -q, and the two CSV queries mmops issues) idle and with 100 GiB held
# by a torch process; mmops doctor/plan on a recorded Qwen2.5-VL-7B layout, idle and busy; the
# exact text torch prints for CUDA OOM, an invalid ordinal and no visible GPU.
set -u
out="${OUT:?OUT must name a folder}"
rec="$(mktemp -d)/nvidia-record"
mkdir -p "$rec"
q_gpu="--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu"
q_apps="--query-compute-apps=gpu_uuid,pid,process_name,used_memory"

snap() {  # snap NAME: the queries mmops issues, verbatim
    nvidia-smi "$q_gpu" --format=csv,nounits >"$rec/$1.query-gpu.csv" 2>&1
    nvidia-smi "$q_apps" --format=csv,nounits >"$rec/$1.compute-apps.csv" 2>&1
    nvidia-smi >"$rec/$1.plain.txt" 2>&1
}

{
    date -u +%FT%TZ
    uname -a
    nvidia-smi --version
    python3 -c 'import torch, sys; print(sys.version); print("torch", torch.__version__, torch.version.cuda)'
} >"$rec/machine.txt" 2>&1

snap h200-idle
nvidia-smi -q >"$rec/h200-idle.q.txt" 2>&1

model="$(mktemp -d)/Qwen2.5-VL-7B-Instruct"
python3 -c "
import sys; sys.path.insert(0, 'tests/fixtures')
from pathlib import Path
from build_model_dir import build_model_dir
build_model_dir('Qwen2.5-VL-7B-Instruct', Path('$model'))
"
mm() {  # mm NAME ARGS...: one mmops command, its exit code and wall time
    local name="$1"; shift
    local t0=$EPOCHREALTIME rc
    python3 -m mmops "$@" >"$rec/$name.out" 2>"$rec/$name.err"
    rc=$?
    echo "rc=$rc wall_s=$(python3 -c "print(round($EPOCHREALTIME - $t0, 3))")" >"$rec/$name.rc"
}
mm doctor-idle doctor --model "$model" --device nvidia --max-model-len 32768
mm doctor-idle-json doctor --model "$model" --device nvidia --max-model-len 32768 --json
mm plan-idle-json plan --model "$model" --device nvidia --max-model-len 32768 --json
mm doctor-tp2 doctor --model "$model" --device nvidia --tensor-parallel-size 2

# Hold 100 GiB in another process so the busy readings are real.
python3 -c '
import time, torch
x = torch.empty(100 * 2**30, dtype=torch.uint8, device="cuda"); x.fill_(1)
torch.cuda.synchronize(); print("held", flush=True); time.sleep(90)
' >"$rec/holder.out" 2>&1 &
holder=$!
for _ in $(seq 60); do grep -q held "$rec/holder.out" && break; sleep 1; done
snap h200-busy
mm doctor-busy doctor --model "$model" --device nvidia --max-model-len 32768
mm doctor-busy-json doctor --model "$model" --device nvidia --max-model-len 32768 --json
# The exact texts torch prints when the card is short, the ordinal wrong, or nothing visible.
python3 -c 'import torch; torch.empty(60 * 2**30, dtype=torch.uint8, device="cuda")' >"$rec/torch-oom.txt" 2>&1
kill "$holder"; wait "$holder" 2>/dev/null
CUDA_VISIBLE_DEVICES=3 python3 -c 'import torch; torch.zeros(1, device="cuda")' >"$rec/torch-bad-ordinal.txt" 2>&1
CUDA_VISIBLE_DEVICES= python3 -c 'import torch; torch.zeros(1, device="cuda")' >"$rec/torch-no-visible.txt" 2>&1
python3 -c 'import torch; torch.cuda.set_device(5)' >"$rec/torch-set-device-5.txt" 2>&1
nvidia-smi -i 5 >"$rec/smi-bad-index.txt" 2>&1
CUDA_VISIBLE_DEVICES=GPU-00000000-0000-0000-0000-000000000000 python3 -c 'import torch; print(torch.cuda.device_count())' >"$rec/torch-bogus-uuid.txt" 2>&1

tar -C "$(dirname "$rec")" -czf "$out/nvidia-record.tar.gz" nvidia-record
ls -la "$rec"
