"""The table of bench/gpu_check.sh: per run (SFT / PPO under DDP / FSDP2), the median seconds per
step, throughput, the PPO step's parts and rank 0's peak GPU memory, read from each run's
metrics.jsonl.

    python bench/gpu_check_report.py OUT_DIR RANKS

Step seconds are the differences of the logged `time` of consecutive steps from step 3 on (the
first two include CUDA and allocator warm-up); the runs save only at their end and evaluate never,
so no step carries a save.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
from pathlib import Path

from reft.metrics import read_metrics

RUNS = ("sft_ddp", "sft_fsdp2", "ppo_ddp", "ppo_fsdp2")
PPO_PARTS = ("time_rollout", "time_forward", "time_update")


def summarize(out: Path) -> dict[str, float]:
    """Median step seconds, mean throughput / parts, the largest per-step peak memory of one run."""
    records = read_metrics(out, "train")
    times = [r["time"] for r in records]
    steps = [b - a for a, b in itertools.pairwise(times[1:])]  # step 3 on
    summary = {"steps": len(records), "s_per_step": statistics.median(steps) if steps else 0.0}
    for key in ("tokens_per_s", *PPO_PARTS):
        values = [r[key] for r in records[2:] if key in r]
        if values:
            summary[key] = statistics.fmean(values)
    peaks = [r["memory_peak_gib"] for r in records if "memory_peak_gib" in r]
    summary["memory_peak_gib"] = max(peaks) if peaks else float("nan")
    summary["last_loss"] = records[-1].get("loss", records[-1].get("policy_loss", float("nan")))
    return summary


def table(results: dict[str, dict[str, float]], ranks: int) -> str:
    rows = [f"| run ({ranks} ranks) | s/step | tokens/s | rollout / forward / update s | peak GiB (rank 0) |",
            "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, s in results.items():
        parts = " / ".join(f"{s[k]:.3f}" for k in PPO_PARTS) if PPO_PARTS[0] in s else "-"
        peak = s["memory_peak_gib"]
        memory = f"{peak:.2f}" if math.isfinite(peak) else "- (no CUDA)"
        rows.append(f"| {name} | {s['s_per_step']:.3f} | {s.get('tokens_per_s', 0):,.0f} | "
                    f"{parts} | {memory} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    out, ranks = Path(sys.argv[1]), int(sys.argv[2])
    results = {name: summarize(out / name) for name in RUNS}
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    text = table(results, ranks)
    (out / "gpu_check.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
