#!/usr/bin/env bash
# GPU check (issue #16, item 3): one script, under 5 minutes on one GPU, nothing downloaded.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]       # OUT_DIR: default $OUT if set, else ./gpu_check_out
#
# Parts, each under `timeout` and within a total budget (GPU_CHECK_BUDGET_S, default 290 s):
#   1. nvidia-smi summary, torch/CUDA versions
#   2. pytest -m cuda                                  (tests/engine/test_cuda.py and any other cuda test)
#   3. benchmarks/optim_step.py --device cuda          (fused/foreach Adam, ZNorm, GC steps)
#   4. benchmarks/train_throughput.py --device cuda    (ResNet-50-UNet, 256 px, batch 16: fp32 vs
#      bf16+channels_last vs bf16+channels_last+torch.compile, Adam vs Adam+ZNorm; peak memory at
#      batch 16 and 32; prints whether bf16+channels_last >= 2x fp32 and ZNorm >= 0.97x Adam)
#   5. if torch.cuda.device_count() >= 2: a 2-process DDP `medseg train` (torchrun) of 1 short
#      epoch on the embedded demo data (written by `medseg demo-data`, no download)
# Everything printed goes to OUT_DIR/gpu_check.log (and the terminal); a part that fails or
# times out is reported in the summary at the end and the script exits 1, after running the rest.
#
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_BUDGET_S.
# GPU_CHECK_CPU_SMOKE=1 runs every command on the CPU with tiny settings (and the DDP part with
# gloo on 2 CPU processes) to check the script itself on a machine without a GPU.
set -euo pipefail

out_dir=${1:-${OUT:-./gpu_check_out}}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log="$out_dir/gpu_check.log"
: >"$log"
exec > >(tee -a "$log") 2>&1

py=${PYTHON:-.venv/bin/python}
if [[ ! -x $py ]]; then
    py=python3
fi
smoke=${GPU_CHECK_CPU_SMOKE:-0}
budget=${GPU_CHECK_BUDGET_S:-290}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}

summary=()
failed=0

# run_part NAME LIMIT_S COMMAND...: COMMAND under `timeout`, never past the total budget.
run_part() {
    local name=$1 limit=$2
    shift 2
    local left=$((budget - SECONDS))
    if ((left < 15)); then
        summary+=("$name: SKIPPED (the ${budget} s budget is spent)")
        failed=1
        return 0
    fi
    if ((limit > left)); then
        limit=$left
    fi
    echo
    echo "=== $name (timeout ${limit} s, ${SECONDS} s into the check) ==="
    local start=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    local took=$((SECONDS - start))
    case $rc in
        0) summary+=("$name: ok (${took} s)") ;;
        124 | 137) summary+=("$name: TIMED OUT after ${limit} s"); failed=1 ;;
        *) summary+=("$name: FAILED, exit code $rc (${took} s)"); failed=1 ;;
    esac
}

echo "=== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ), log: $log ==="
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version,utilization.gpu,temperature.gpu \
        --format=csv || true
else
    echo "nvidia-smi: not found"
fi
"$py" -c 'import sys, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, GPUs {torch.cuda.device_count()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")'

if [[ $smoke == 1 ]]; then
    echo "GPU_CHECK_CPU_SMOKE=1: every part on the CPU with tiny settings (no figure is meaningful)"
    device=cpu
    gpus=2
    optim_args=(--device cpu --quick)
    throughput_args=(--device cpu --quick --encoder resnet18 --size 64 --batch 2
                     --precisions fp32,bf16-cl,bf16-cl-compile --memory-batches 16,32)
    ddp_sets=(--set train.device=cpu --set model.encoder=resnet18 --set data.image_size=64
              --set train.batch_size=2 --set train.max_steps_per_epoch=2)
else
    if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu_check: torch sees no CUDA GPU; nothing to check (GPU_CHECK_CPU_SMOKE=1 tries the script on the CPU)"
        exit 1
    fi
    device=cuda
    gpus=$("$py" -c 'import torch; print(torch.cuda.device_count())')
    optim_args=(--device cuda)
    throughput_args=(--device cuda --encoder resnet50 --size 256 --batch 16
                     --precisions fp32,bf16-cl,bf16-cl-compile --memory-batches 16,32 --cudnn-benchmark)
    ddp_sets=(--set data.image_size=256 --set train.batch_size=16 --set train.max_steps_per_epoch=20)
fi

run_part "pytest -m cuda" 120 "$py" -m pytest -m cuda tests -q -rs -p no:cacheprovider
run_part "optim_step ($device)" 90 "$py" benchmarks/optim_step.py "${optim_args[@]}"
run_part "train_throughput ($device)" 200 "$py" benchmarks/train_throughput.py "${throughput_args[@]}"

if ((gpus >= 2)); then
    demo="$out_dir/demo_lgg"
    run_dir="$out_dir/ddp_run"
    rm -rf "$run_dir"
    if [[ ! -f $demo/medseg_demo.json ]]; then
        run_part "demo data (embedded)" 60 "$py" -m medseg demo-data lgg "$demo"
    fi
    run_part "DDP: torchrun 2 processes, medseg train 1 epoch" 120 \
        "$py" -m torch.distributed.run --standalone --nproc_per_node 2 -m medseg train \
        configs/demo_lgg.yaml --set data.root="$demo" --set output.dir="$run_dir" \
        --set train.epochs=1 --set train.warmup_epochs=0 --set train.log_every=5 "${ddp_sets[@]}"
else
    summary+=("DDP: skipped ($gpus GPU)")
fi

echo
echo "=== summary (${SECONDS} s in all; log: $log) ==="
printf '%s\n' "${summary[@]}"
targets=$(grep -E '^target:|: (met|MISSED)$' "$log" || true)  # read whole before it is printed
echo "${targets:-no target lines}"
exit "$failed"
