"""The `openrlhf` export: the layout OpenRLHF's `train_prm` reads (Math-Shepherd style).

OpenRLHF's `ProcessRewardDataset` (openrlhf 0.5.7-0.8.11; `train_prm` and the
dataset class were removed in 0.9.0) tokenizes the text under `--input_key`,
finds every occurrence of `--placeholder_token` and supervises exactly those
positions with the labels under `--label_key`: reward tokens (`+` / `-`, encoded
to their token ids) or floats (soft labels, trained against the first two
`--reward_tokens`). This is Math-Shepherd's layout (Wang et al., 2024): each step
followed by the placeholder `ки`.

Rows are built from the `stepwise` export's rows (the same labelled steps), one per
rollout: `input` = question, newline, then each step followed by a space and the
placeholder, steps separated by newlines; `label` = `+`/`-` per step; `soft_label` =
the step values. The defaults `input` / `label` are train_prm's default keys, so

    openrlhf.cli.train_prm --dataset <repo> --placeholder_token ки --reward_tokens + -

reads it unchanged. `soft_label` holds the step values for readers that take
float labels; OpenRLHF 0.8.11's own `ProcessRewardDataset` cannot (its
`labels[mask] = ...` puts floats into an int64 tensor and raises), so train_prm
needs `label`. A row whose
question or steps already contain the placeholder would get extra supervised
positions; it is left out and counted on the card. The placeholder and both
reward tokens must each be one token of the model's tokenizer (OpenRLHF asserts it).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from prm_data.exports.step_offsets import list_offsets


class OpenRLHFConfig(BaseModel):
    """The placeholder and reward tokens of the `openrlhf` export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    placeholder_token: str = Field("ки", min_length=1, description="Token after each step whose position is "
                                   "supervised (train_prm --placeholder_token); Math-Shepherd uses ки.")
    positive_token: str = Field("+", min_length=1, description="Label of a correct step (first of --reward_tokens).")
    negative_token: str = Field("-", min_length=1, description="Label of a wrong step (second of --reward_tokens).")


def build_openrlhf_rows(stepwise: pa.Table, config: OpenRLHFConfig) -> tuple[pa.Table, dict]:
    """The `openrlhf` rows of these stepwise rows, and what the card says about them."""
    placeholder = config.placeholder_token
    steps_flat, offsets = list_offsets(stepwise["completions"])
    clash = np.zeros(stepwise.num_rows, bool)
    if _may_contain(steps_flat, placeholder):
        rollout = np.repeat(np.arange(stepwise.num_rows), np.diff(offsets))
        step_has = np.asarray(pc.match_substring(steps_flat, placeholder, ignore_case=False)
                              .to_numpy(zero_copy_only=False), bool)
        clash[rollout[step_has]] = True
    if _may_contain(stepwise["prompt"], placeholder):
        clash |= np.asarray(pc.fill_null(pc.match_substring(stepwise["prompt"], placeholder), False)
                            .to_numpy(zero_copy_only=False), bool)
    rows = stepwise.filter(pa.array(~clash)) if clash.any() else stepwise  # a filter copies every text
    if clash.any():
        steps_flat, offsets = list_offsets(rows["completions"])
    # question, newline, then the steps joined by " <placeholder>\n" and the last one's " <placeholder>":
    # two passes over the text (a join per row, then one per row with the question) instead of three
    body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), steps_flat), f" {placeholder}\n")
    last_mark = pc.if_else(pa.array(np.diff(offsets) > 0), f" {placeholder}", "")  # none after no steps
    inputs = pc.binary_join_element_wise(rows["prompt"].combine_chunks(), "\n", body, last_mark, "")
    labels_flat, _ = list_offsets(rows["labels"])
    tokens = pc.if_else(labels_flat, config.positive_token, config.negative_token)
    table = pa.table({
        "problem_id": rows["problem_id"],
        "rollout_id": rows["rollout_id"],
        "input": inputs,
        "label": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), tokens),
        "soft_label": rows["values"],
        "is_correct": rows["is_correct"],
    })
    card = {**config.model_dump(mode="json"),
            "train_prm_flags": f"--input_key input --label_key label --placeholder_token {placeholder} "
                               f"--reward_tokens {config.positive_token} {config.negative_token}",
            "left_out": {"text_contains_placeholder": int(clash.sum())}}
    return table, card


def _may_contain(strings: pa.Array | pa.ChunkedArray, text: str) -> bool:
    """False when no string of `strings` can contain `text`: it is nowhere in their character data.

    One search of the data buffers (a match may also span two neighbouring strings, so True
    only means "look row by row"); a placeholder is almost never in the text, and this is
    several times faster than matching each string.
    """
    needle = re.compile(re.escape(text.encode()))
    chunks = strings.chunks if isinstance(strings, pa.ChunkedArray) else [strings]
    return any(chunk.buffers()[2] is not None and needle.search(memoryview(chunk.buffers()[2]))
               for chunk in chunks)
