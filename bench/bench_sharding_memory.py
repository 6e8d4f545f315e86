"""Bytes each rank holds for training under DDP and under FSDP2 (reft.train.sharding), measured from
the tensors after one AdamW step: parameters, gradients and optimizer state, plus the process's
peak resident memory.

    python bench/bench_sharding_memory.py [--ranks 2] [--layers 30]

The model is random, built from a config shaped like SmolLM2-135M (hidden 576, 9 query and 3 key /
value heads, MLP 1536, vocabulary 49,152, tied embeddings; `--layers` decoder layers), fp32, so
nothing is downloaded. Each mode runs as its own `torchrun` of `--ranks` gloo processes with one
thread each; every rank takes one step on 2 sequences of 64 tokens. The table is printed in
Markdown (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("ddp", "fsdp2")


def _model(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=layers,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         tie_word_embeddings=True, max_position_embeddings=128)  # fmt: skip
    return LlamaForCausalLM(config)


def _local_bytes(tensors) -> int:
    """Bytes of this rank's part of each tensor (a DTensor's local shard), each tensor once."""
    from torch.distributed.tensor import DTensor

    seen, total = set(), 0
    for tensor in tensors:
        if tensor is None or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        total += local.numel() * local.element_size()
    return total


def _rank_main(mode: str, layers: int, report: Path) -> None:
    """One rank: wrap the model, take one step, write what it holds to report/rank{R}.json."""
    import torch
    import torch.distributed as dist

    from reft.train.sharding import layer_classes, shard

    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = _model(layers)
    full_parameters = sum(p.numel() for p in model.parameters())
    if mode == "fsdp2":
        shard(model, layer_classes(model))
        trained = model
    else:
        trained = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 49152, (2, 64))
    trained(input_ids=ids, labels=ids).loss.backward()
    grads = _local_bytes(p.grad for p in model.parameters())
    optimizer.step()
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    held = {
        "parameters": _local_bytes(model.parameters()),
        "gradients": grads,
        "optimizer": _local_bytes(state),
        "full_parameters": full_parameters,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    (report / f"rank{dist.get_rank()}.json").write_text(json.dumps(held))
    dist.destroy_process_group()


def _launch(mode: str, ranks: int, layers: int, report: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_RANK_MODE": mode}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(ranks), __file__, "--layers", str(layers), "--report", str(report)]  # fmt: skip
    subprocess.run(command, env=env, check=True, capture_output=True)
    return [json.loads((report / f"rank{r}.json").read_text()) for r in range(ranks)]


def _table(results: dict[str, list[dict]]) -> str:
    mib = 2**20
    rows = ["| per rank | " + " | ".join(MODES) + " | FSDP2 / DDP |", "| --- | --- | --- | --- |"]
    for key in ("parameters", "gradients", "optimizer", "total", "peak_rss"):
        values = []
        for mode in MODES:
            held = results[mode][0]
            values.append(sum(held[k] for k in ("parameters", "gradients", "optimizer"))
                          if key == "total" else held[key])  # fmt: skip
        name = "params + grads + Adam" if key == "total" else key.replace("_", " ")
        cells = " | ".join(f"{value / mib:,.1f} MiB" for value in values)
        rows.append(f"| {name} | {cells} | {values[1] / values[0]:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "BENCH_RANK_MODE" in os.environ:
        _rank_main(os.environ["BENCH_RANK_MODE"], args.layers, args.report)
        return
    with tempfile.TemporaryDirectory() as root:
        results = {}
        for mode in MODES:
            (Path(root) / mode).mkdir()
            results[mode] = _launch(mode, args.ranks, args.layers, Path(root) / mode)
    ranks = [[sum(r[k] for k in ("parameters", "gradients", "optimizer")) for r in results[m]]
             for m in MODES]  # fmt: skip
    print(f"{results['ddp'][0]['full_parameters']:,} parameters, {args.ranks} ranks; "
          f"params+grads+Adam bytes of each rank: {dict(zip(MODES, ranks, strict=True))}")  # fmt: skip
    print(_table(results))


if __name__ == "__main__":
    main()
