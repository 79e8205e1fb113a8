"""The `rl_rewards` export: per rollout, transformed step rewards placed at step ends.

Built from the rows of the `stepwise` export (one per rollout: the labelled prefix
of steps and their soft values), so it sees exactly the steps that export supervises.
Per rollout it writes the response (steps joined by the export's step separator),
the raw step values, the chosen transform's step rewards (prm_data/exports/rl_rewards.py),
the outcome reward, and where each step ends: character offsets, and token indices
for a named tokenizer (prm_data/exports/step_offsets.py). Rollouts whose outcome
is unknown (`is_correct` null) are left out and counted on the card.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prm_data.exports.rl_rewards import RewardTransformConfig, apply_transform
from prm_data.exports.step_offsets import (join_responses, list_offsets, load_tokenizer, step_end_chars,
                                           step_end_tokens)


def start_potentials(problem_ids: pa.ChunkedArray, outcome: np.ndarray) -> np.ndarray:
    """Per rollout, V(s_0): the share of its problem's exported rollouts whose answer is right.

    The Monte Carlo value of the bare question (Wang et al., 2024, Math-Shepherd,
    estimate a prefix's value the same way) from the rollouts at hand.
    """
    codes = np.asarray(pc.dictionary_encode(problem_ids).combine_chunks().indices, np.int64)
    sums = np.bincount(codes, weights=outcome)
    counts = np.bincount(codes)
    return (sums / counts)[codes]


def build_rl_rows(stepwise: pa.Table, config: RewardTransformConfig, separator: str,
                  tokenizer: str | None) -> tuple[pa.Table, dict]:
    """The `rl_rewards` rows of these stepwise rows, and what the card says about them."""
    known = pc.is_valid(stepwise["is_correct"])
    rows = stepwise.filter(known) if stepwise["is_correct"].null_count else stepwise  # a filter copies every text
    outcome = np.asarray(rows["is_correct"].to_numpy(), np.float64) if rows.num_rows else np.zeros(0)
    values_flat, offsets = list_offsets(rows["values"])
    values = np.asarray(values_flat.to_numpy(zero_copy_only=False), np.float64)
    rewards = apply_transform(config, values, offsets, outcome, start_potentials(rows["problem_id"], outcome))
    responses = join_responses(rows["completions"], separator)
    end_chars, _ = step_end_chars(rows["completions"], separator)
    offsets32 = pa.array(offsets, pa.int32())
    end_tokens = (pa.ListArray.from_arrays(offsets32, pa.array(step_end_tokens(responses, end_chars, offsets,
                                                                                  load_tokenizer(tokenizer)),
                                                               pa.int32()))
                  if tokenizer else pa.nulls(rows.num_rows, pa.list_(pa.int32())))
    table = pa.table({
        "problem_id": rows["problem_id"],
        "rollout_id": rows["rollout_id"],
        "prompt": rows["prompt"],
        "response": responses,
        "steps": rows["completions"],
        "step_end_char": pa.ListArray.from_arrays(offsets32, pa.array(end_chars, pa.int32())),
        "step_end_token": end_tokens,
        "step_values": rows["values"],
        "step_rewards": pa.ListArray.from_arrays(offsets32, pa.array(rewards, pa.float64())),
        "outcome_reward": pa.array(outcome, pa.float64()),
        "labels": rows["labels"],
        "policy_model": rows["policy_model"],
    })
    card = {"transform": config.model_dump(mode="json"), "tokenizer": tokenizer,
            "separator": separator, "left_out": {"outcome_unknown": stepwise.num_rows - rows.num_rows},
            "reward_stats": _stats(rewards)}
    return table, card


def _stats(rewards: np.ndarray) -> dict:
    if not len(rewards):
        return {"steps": 0}
    return {"steps": int(len(rewards)), "min": round(float(rewards.min()), 4), "max": round(float(rewards.max()), 4),
            "mean": round(float(rewards.mean()), 4)}
