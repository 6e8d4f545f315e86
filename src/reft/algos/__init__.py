"""The pure RL math of ReFT's PPO stage (torch only: no transformers, no I/O, no globals).

Tensors are (B, T): B sequences, T response positions, position t being the step that emits
response token t; masks are bool (or 0/1) and true on response tokens up to and including EOS.
Choices made once at config time are small registries: `WHITENERS`, `KL_ESTIMATORS`,
`LOSS_AGGREGATORS`, and `GROUP_ESTIMATORS` for the critic-free (GRPO-style) advantages, which take
(N,) scores and group ids. docs/implementation_details.md maps each detail to the reference code.
"""

from reft.algos.advantages import discounted_returns, gae
from reft.algos.group_advantages import (
    GROUP_ESTIMATORS,
    dr_grpo_advantages,
    group_mean_std,
    grpo_advantages,
    reinforce_pp_baseline_scores,
    reinforce_pp_returns,
    rloo_advantages,
    sequence_to_tokens,
)
from reft.algos.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from reft.algos.logprobs import entropy_from_logits, logprobs_from_logits
from reft.algos.losses import (
    LOSS_AGGREGATORS,
    ppo_policy_loss,
    seq_mean_token_mean,
    sft_nll,
    token_mean,
    token_sum_constant,
    value_loss,
)
from reft.algos.normalize import (
    WHITENERS,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    masked_whiten_global,
    no_whiten,
)
from reft.algos.shaping import kl_penalized_rewards, last_response_index, place_score
from reft.algos.stats import (
    approx_kl_k1,
    approx_kl_k3,
    clip_fraction,
    explained_variance,
    explained_variance_over_processes,
    value_clip_fraction,
)

__all__ = [
    "GROUP_ESTIMATORS",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATORS",
    "WHITENERS",
    "approx_kl_k1",
    "approx_kl_k3",
    "clip_fraction",
    "discounted_returns",
    "dr_grpo_advantages",
    "entropy_from_logits",
    "explained_variance",
    "explained_variance_over_processes",
    "gae",
    "group_mean_std",
    "grpo_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_penalized_rewards",
    "last_response_index",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "masked_whiten_global",
    "no_whiten",
    "place_score",
    "ppo_policy_loss",
    "reinforce_pp_baseline_scores",
    "reinforce_pp_returns",
    "rloo_advantages",
    "seq_mean_token_mean",
    "sequence_to_tokens",
    "sft_nll",
    "token_mean",
    "token_sum_constant",
    "value_clip_fraction",
    "value_loss",
]
