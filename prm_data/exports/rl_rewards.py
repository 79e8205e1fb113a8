"""Step rewards for RL: transforms of the exported step values, each a pure function.

Process rewards are now mostly fed to policy optimization as dense step rewards, and
how the PRM's scores are turned into rewards decides whether the policy learns or
learns to farm them. Each transform here takes one rollout's step values (the soft
labels of the `stepwise` export, in [0, 1]) and, where it needs one, the rollout's
outcome reward (1.0 when the final answer is right, else 0.0), and returns one
reward per step:

- `clip_rewards` and `delta_rewards`: Gao et al., "On Designing Effective RL Reward at
  Training Time for LLM Reasoning" (arXiv:2410.15115);
- `potential_shaping`: potential-based shaping (Ng, Harada and Russell, ICML 1999) with
  the step value as the potential, as OPRL and Robo-Dopamine use a learned value;
- `gated_rewards`: G-RA, "Stabilizing Long-term Multi-turn Reinforcement Learning with
  Gated Rewards" (2025);
- `progress_attribution`: SPA-RL, "Reinforcing LLM Agents via Stepwise Progress
  Attribution" (2025).

Every function works on a whole export at once: `values` is the flat array of every
rollout's step values and `offsets` (length rollouts + 1) says where each rollout's
steps start, the layout of an Arrow list column; one rollout is `offsets=[0, n]`.
`apply_transform` picks one by name from a `RewardTransformConfig`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

TRANSFORMS = ("raw", "clip", "delta", "clip_delta", "potential", "gated", "progress")


class RewardTransformConfig(BaseModel):
    """Which step-reward transform the `rl_rewards` export writes, and its parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transform: Literal[TRANSFORMS] = Field("clip_delta", description="raw (the step values), clip, delta, "
                                           "clip_delta (Gao et al.'s recommended combination), potential "
                                           "(potential-based shaping), gated (G-RA), progress (SPA-RL).")
    clip_threshold: float = Field(0.5, description="Clip: the value subtracted before clipping (eta in Gao et "
                                  "al.): steps valued below it get negative rewards.")
    clip_upper: float = Field(0.0, description="Clip: the upper bound of a step reward; 0 makes every reward "
                              "<= 0, so writing more steps can never raise the return.")
    gamma: float = Field(1.0, gt=0.0, le=1.0, description="Potential shaping: the discount factor.")
    terminal_potential_zero: bool = Field(True, description="Potential shaping: the state after the last step "
                                          "has potential 0 (Ng et al.'s condition for episodic tasks, which keeps "
                                          "the optimal policy); False uses the last step's value.")
    gate: float = Field(1.0, description="Gated: step rewards count only when the outcome reward is >= this.")


def _rollout_of(offsets: np.ndarray) -> np.ndarray:
    """For each flat step, the index of its rollout."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _first_mask(offsets: np.ndarray, n: int) -> np.ndarray:
    first = np.zeros(n, bool)
    starts = offsets[:-1][np.diff(offsets) > 0]
    first[starts] = True
    return first


def _last_mask(offsets: np.ndarray, n: int) -> np.ndarray:
    last = np.zeros(n, bool)
    ends = offsets[1:][np.diff(offsets) > 0] - 1
    last[ends] = True
    return last


def clip_rewards(values: np.ndarray, threshold: float = 0.5, upper: float = 0.0) -> np.ndarray:
    """Clip (Gao et al., arXiv:2410.15115): r'_t = min(r_t - threshold, upper).

    With `upper = 0` every step reward is <= 0, so a policy cannot raise its return
    by writing more (or more trivially correct) steps: the reward hacking the paper
    observed with raw PRM rewards. Monotone: the order of steps by value is kept.
    """
    return np.minimum(np.asarray(values, np.float64) - threshold, upper)


def delta_rewards(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Delta (Gao et al., arXiv:2410.15115): r'_t = r_t - r_{t+1}, and r'_T = r_T for the last step.

    The sum from any step t to the end telescopes to r_t, so the return-to-go of a
    step is that step's own reward whatever follows: it cannot be farmed by
    repeating steps, and its size stays bounded by the reward's range.
    """
    values = np.asarray(values, np.float64)
    out = values.copy()
    if len(values):
        not_last = ~_last_mask(np.asarray(offsets), len(values))
        idx = np.flatnonzero(not_last)
        out[idx] = values[idx] - values[idx + 1]
    return out


def potential_shaping(values: np.ndarray, offsets: np.ndarray, start_potential: np.ndarray, gamma: float = 1.0,
                      terminal_potential_zero: bool = True) -> np.ndarray:
    """Potential-based shaping (Ng, Harada and Russell, ICML 1999), the step value as the potential.

    The state s_t is the solution's first t steps; its potential is V(s_0) =
    `start_potential` (per rollout: the value of the bare question) and V(s_{t+1}) =
    the value of step t. Step t's reward is r'_t = gamma * V(s_{t+1}) - V(s_t); the
    discounted sum telescopes to gamma^T V(s_T) - V(s_0). With the terminal state's
    potential set to 0 (`terminal_potential_zero`), that sum is the same -V(s_0) for
    every solution of a problem, so adding it to the outcome reward keeps the ranking
    of solutions and the optimal policy (as OPRL and Robo-Dopamine use it).
    """
    values = np.asarray(values, np.float64)
    offsets = np.asarray(offsets)
    out = np.empty_like(values)
    if not len(values):
        return out
    rollout = _rollout_of(offsets)
    first = _first_mask(offsets, len(values))
    last = _last_mask(offsets, len(values))
    before = np.empty_like(values)  # V(s_t): the previous step's value, or the start potential
    before[1:] = values[:-1]
    before[first] = np.asarray(start_potential, np.float64)[rollout[first]]
    after = np.where(last & terminal_potential_zero, 0.0, values)  # V(s_{t+1})
    out[:] = gamma * after - before
    return out


def gated_rewards(values: np.ndarray, offsets: np.ndarray, outcome: np.ndarray, gate: float = 1.0) -> np.ndarray:
    """G-RA ("Stabilizing Long-term Multi-turn RL with Gated Rewards", 2025): a rollout's step rewards count only when its outcome reward passes the gate.

    r'_t = r_t when outcome >= gate, else 0: the dense step rewards cannot pull the
    policy toward solutions that fail the long-term goal, which the paper finds
    destabilizes long-horizon training.
    """
    values = np.asarray(values, np.float64)
    passed = np.asarray(outcome, np.float64) >= gate
    return np.where(passed[_rollout_of(np.asarray(offsets))], values, 0.0)


def progress_attribution(values: np.ndarray, offsets: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """SPA-RL ("Reinforcing LLM Agents via Stepwise Progress Attribution", 2025): step contributions rescaled so that they sum to the outcome reward.

    SPA-RL trains a progress estimator whose per-step contributions add up to the
    final reward and uses them as dense rewards. Here the contribution of a step is
    its value (the estimated chance the solution still succeeds after it, >= 0), and
    r'_t = R * c_t / sum(c); a rollout whose contributions are all 0 gets R / T per step.
    """
    values = np.clip(np.asarray(values, np.float64), 0.0, None)
    offsets = np.asarray(offsets)
    if not len(values):
        return values.copy()
    counts = np.diff(offsets)
    rollout = _rollout_of(offsets)
    totals = np.add.reduceat(values, offsets[:-1][counts > 0])
    total = np.zeros(len(counts))
    total[counts > 0] = totals
    outcome = np.asarray(outcome, np.float64)
    per_step_total = total[rollout]
    uniform = outcome[rollout] / np.maximum(counts[rollout], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = outcome[rollout] * values / per_step_total
    return np.where(per_step_total > 0, scaled, uniform)


def apply_transform(config: RewardTransformConfig, values: np.ndarray, offsets: np.ndarray,
                    outcome: np.ndarray, start_potential: np.ndarray) -> np.ndarray:
    """The per-step rewards of `config.transform` (flat, aligned with `values`)."""
    t = config.transform
    if t == "raw":
        return np.asarray(values, np.float64).copy()
    if t == "clip":
        return clip_rewards(values, config.clip_threshold, config.clip_upper)
    if t == "delta":
        return delta_rewards(values, offsets)
    if t == "clip_delta":  # Gao et al.'s combination: clip first, then delta
        return delta_rewards(clip_rewards(values, config.clip_threshold, config.clip_upper), offsets)
    if t == "potential":
        return potential_shaping(values, offsets, start_potential, config.gamma, config.terminal_potential_zero)
    if t == "gated":
        return gated_rewards(values, offsets, outcome, config.gate)
    if t == "progress":
        return progress_attribution(values, offsets, outcome)
    raise ValueError(f"unknown reward transform {t!r}; choose one of {', '.join(TRANSFORMS)}")
