"""Generation: one engine for every sample reft draws, and where ReFT's rollouts come from.

- `config`: `SamplingConfig` and the engine choice (torch-free, for configs and --help).
- `engine`: the generation engine (reft's own KV-cache decode loop, or HF `generate`) ->
  `GeneratedBatch`; `generate_ids` is its entry point.
- `backends`: where ReFT rollouts are generated: the engine above on the training model, or vLLM
  (weights synced after every update).

Import the submodules directly: this package imports nothing, so `config` stays torch-free.
"""
