"""Tokenize stepwise rows the way TRL's PRMTrainer does, plus soft labels, and batch them.

`tokenize_example` reproduces `trl.experimental.prm.PRMTrainer.tokenize_row`
(TRL 1.0-1.13): the prompt (after the BOS token when the tokenizer has one),
then every step followed by the step separator; each step's label sits on the
last separator token after it, every other position is -100. It also returns
`soft_labels`, the step's `values` entry at the same positions (-100.0
elsewhere), for training on Monte Carlo soft labels. tests/test_train.py
checks token-for-token equality with TRL where TRL is installed.
"""

from __future__ import annotations

from itertools import chain

import torch

IGNORE = -100


def tokenize_example(example: dict, tokenizer, step_separator: str = "\n", max_length: int | None = None,
                     max_completion_length: int | None = None, train_on_last_step_only: bool = False,
                     is_eval: bool = False) -> dict[str, list]:
    """input_ids, labels (int, -100 off the step ends) and soft_labels (float) of one stepwise row."""
    prompt_ids = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]
    steps_ids = [tokenizer(step, add_special_tokens=False)["input_ids"] for step in example["completions"]]
    n = len(example["labels"])
    if n != len(steps_ids):
        raise ValueError(f"{n} labels for {len(steps_ids)} steps")
    hard = [int(label) for label in example["labels"]]
    soft = [float(v) for v in example.get("values") or [float(label) for label in hard]]
    if train_on_last_step_only and not is_eval:
        hard = [IGNORE] * (n - 1) + hard[-1:]
        soft = [float(IGNORE)] * (n - 1) + soft[-1:]
    separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
    steps_ids = [ids + separator_ids for ids in steps_ids]
    labels = list(chain(*([IGNORE] * (len(ids) - 1) + [lab] for ids, lab in zip(steps_ids, hard))))
    soft_labels = list(chain(*([float(IGNORE)] * (len(ids) - 1) + [v] for ids, v in zip(steps_ids, soft))))
    completion_ids = list(chain(*steps_ids))
    if tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    if max_completion_length is not None:
        completion_ids, labels = completion_ids[:max_completion_length], labels[:max_completion_length]
        soft_labels = soft_labels[:max_completion_length]
    input_ids = prompt_ids + completion_ids
    labels = [IGNORE] * len(prompt_ids) + labels
    soft_labels = [float(IGNORE)] * len(prompt_ids) + soft_labels
    if max_length is not None:
        input_ids, labels, soft_labels = input_ids[:max_length], labels[:max_length], soft_labels[:max_length]
    return {"input_ids": input_ids, "labels": labels, "soft_labels": soft_labels}


def tokenize_dataset(ds, tokenizer, step_separator: str = "\n", max_length: int | None = None,
                     max_completion_length: int | None = None, train_on_last_step_only: bool = False,
                     is_eval: bool = False):
    """`tokenize_example` over a stepwise `Dataset`, keeping only the tokenized columns.

    The output features are given explicitly: left to infer them, `map` would
    reuse the input's `labels: list<bool>` type and turn every -100 into True.
    Kept in memory, so no cache file is written into the export folder.
    """
    from datasets import Features, List, Value

    features = Features({"input_ids": List(Value("int64")), "labels": List(Value("int64")),
                         "soft_labels": List(Value("float32"))})
    kwargs = {"tokenizer": tokenizer, "step_separator": step_separator, "max_length": max_length,
              "max_completion_length": max_completion_length, "train_on_last_step_only": train_on_last_step_only,
              "is_eval": is_eval}
    return ds.map(tokenize_example, fn_kwargs=kwargs, remove_columns=ds.column_names, features=features,
                  keep_in_memory=True, desc="tokenizing steps")


def step_positions(labels: list[int]) -> list[int]:
    """Token positions that carry a step label (one per step that survived truncation)."""
    return [i for i, lab in enumerate(labels) if lab != IGNORE]


class PadCollator:
    """Right-pads input_ids (pad id), labels (-100) and soft_labels (-100.0); builds the attention mask."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)

        def pad(key, value, dtype):
            return torch.tensor([list(r[key]) + [value] * (width - len(r[key])) for r in rows], dtype=dtype)

        return {
            "input_ids": pad("input_ids", self.pad_token_id, torch.long),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                            for r in rows], dtype=torch.long),
            "labels": pad("labels", IGNORE, torch.long),
            "soft_labels": pad("soft_labels", float(IGNORE), torch.float32),
        }
