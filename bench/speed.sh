#!/usr/bin/env bash
# The PPO speed report in one run: the demo's own PPO step against a baseline revision, the demo's
# rollout (reft's engine against model.generate), and reft's PPO step against TRL GRPO at equal
# updates per rollout (skipped, with a message, where trl is not installed). Each benchmark prints
# its own ratios; see bench/README.md.
#
#   bash bench/speed.sh WARMUP_DIR DATA_DIR [BASELINE_REV]
#   e.g. bash bench/speed.sh runs/demo/seed_0/warmup/final runs/demo/data 507dfd9
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: bash bench/speed.sh WARMUP_DIR DATA_DIR [BASELINE_REV]" >&2
    exit 2
fi
warmup=$1 data=$2 baseline=${3:-}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

echo "## The demo's PPO step, part by part"
python bench/bench_demo_step.py --model "$warmup" --data "$data" ${baseline:+--baseline "$baseline"}

echo "## The demo's rollout: reft's engine against model.generate"
python bench/bench_generation.py --demo-model "$warmup" --demo-data "$data"

echo "## reft's PPO step against TRL GRPO"
if python -c "import trl" 2>/dev/null; then
    OMP_NUM_THREADS=2 python bench/bench_ppo_step.py
else
    echo "skipped: trl is not installed (pip install -e '.[bench]' torch==2.13.0)"
fi
