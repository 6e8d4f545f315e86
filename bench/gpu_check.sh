#!/usr/bin/env bash
# The GPU check, for the day a GPU machine is lent: bf16 SFT and ReFT (PPO) step times and peak GPU
# memory of the small-llama preset (~35 M parameters, random start, the built-in synthetic task)
# under DDP and under FSDP2, on every GPU of the machine. Nothing is installed or downloaded: it
# runs reft from this checkout (PYTHONPATH=src) on the torch / transformers / accelerate already
# there, after checking reft's other imports. About 3-5 minutes on one H100.
#
#   bash bench/gpu_check.sh [OUT_DIR]            (default runs/gpu_check)
#
# Dry run of the same plumbing on CPU (2 gloo ranks, micro-llama, few steps):
#   GPU_CHECK_CPU=1 OMP_NUM_THREADS=1 bash bench/gpu_check.sh runs/gpu_check_cpu
# Results: OUT_DIR/gpu_check.md (the table) and gpu_check.json; each run's log beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

python - <<'PY'
import importlib.util, os, sys
needed = ["torch", "transformers", "accelerate", "tokenizers", "safetensors", "numpy", "yaml",
          "omegaconf", "tqdm", "sympy"]
missing = [name for name in needed if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}: reft needs them (pyproject.toml)")
import torch
if not os.environ.get("GPU_CHECK_CPU") and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device (GPU_CHECK_CPU=1 runs the CPU dry run)")
print("torch", torch.__version__, "cuda", torch.version.cuda,
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
PY

if [[ -n "${GPU_CHECK_CPU:-}" ]]; then
    RANKS=2 MODEL=preset:micro-llama SFT_STEPS=6 PPO_STEPS=3 NEW_TOKENS=24 MICRO=4
else
    RANKS=$(python -c 'import torch; print(torch.cuda.device_count())')
    MODEL=preset:small-llama SFT_STEPS=40 PPO_STEPS=10 NEW_TOKENS=128 MICRO=16
fi
# Per rank: 2 SFT micro-batches and one PPO micro-batch of prompts per step (global sizes grow with
# the ranks, so s/step compares DDP and FSDP2 at equal work per GPU).
SFT_BATCH=$((2 * MICRO * RANKS)) PPO_BATCH=$((MICRO * RANKS))
rm -rf "$OUT" && mkdir -p "$OUT"
python -m reft data synth --split train --n 4096 --out "$OUT/train.json" > /dev/null

# stage name, sharding (ddp | fsdp2), reft arguments...
run() {
    local name=$1 sharding=$2
    shift 2
    local -a env=(env -u ACCELERATE_USE_FSDP -u FSDP_VERSION)
    [[ $sharding == fsdp2 ]] && env+=(ACCELERATE_USE_FSDP=true FSDP_VERSION=2)
    echo "gpu_check: $name ($RANKS ranks) ..."
    if ! "${env[@]}" timeout 400 python -m torch.distributed.run --standalone \
        --nproc_per_node "$RANKS" -m reft "$@" "out_dir=$OUT/$name" > "$OUT/$name.log" 2>&1; then
        echo "gpu_check: $name FAILED; the end of $OUT/$name.log:" >&2
        tail -25 "$OUT/$name.log" >&2
        return 1
    fi
}

COMMON=(dev_data=null mixed_precision=bf16 log_every=1 save_every=100000 seed=0)
for sharding in ddp fsdp2; do
    run "sft_$sharding" "$sharding" sft "model=$MODEL" "train_data=$OUT/train.json" "${COMMON[@]}" \
        "batch_size=$SFT_BATCH" "micro_batch_size=$MICRO" lr=1e-3 "max_steps=$SFT_STEPS"
done
for sharding in ddp fsdp2; do
    run "ppo_$sharding" "$sharding" train "model=$OUT/sft_ddp/final" "train_data=$OUT/train.json" \
        "${COMMON[@]}" "batch_size=$PPO_BATCH" samples_per_prompt=1 "mini_batch_size=$PPO_BATCH" \
        "micro_batch_size=$MICRO" "max_new_tokens=$NEW_TOKENS" lr=1e-5 "max_steps=$PPO_STEPS"
done
python bench/gpu_check_report.py "$OUT" "$RANKS"
