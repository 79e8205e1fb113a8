"""The PRM: a 2-label token classifier read at the step-separator tokens.

As in TRL's PRMTrainer (and Math-Shepherd, Wang et al., 2024), the model sees the
prompt and the steps joined by a separator, and its prediction at the last
separator token after a step is the step's score: P(good) = softmax(logits)[1].

- hard labels: cross-entropy over the two classes at labelled positions;
- soft labels: binary cross-entropy of P(good) = sigmoid(logit_1 - logit_0)
  against the step's Monte Carlo value (the soft estimation of Math-Shepherd),
  which is the cross-entropy against the distribution (1 - v, v).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from prm_data.train.data import IGNORE, PadCollator, step_positions, tokenize_example

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors")
LABELS = {0: "bad", 1: "good"}


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None:  # decoder-only tokenizers often have none
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token_id is None:
        raise ValueError(f"tokenizer {name_or_path} has no pad, eos or unk token to pad with")
    return tokenizer


def load_model(name_or_path: str, pad_token_id: int | None = None):
    """A 2-label token classifier: from weights when `name_or_path` has them, else from its config.

    A folder (or config.json file) without weights gives a randomly initialised
    model of that architecture: the tiny models of the tests and the GPU check.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification

    p = Path(name_or_path)
    kwargs = {"num_labels": 2, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    has_weights = p.is_dir() and any((p / f).exists() for f in WEIGHT_FILES)
    if p.exists() and not has_weights:
        config = AutoConfig.from_pretrained(str(p), **kwargs)
        model = AutoModelForTokenClassification.from_config(config)
    else:
        model = AutoModelForTokenClassification.from_pretrained(name_or_path, **kwargs)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


HEAD_MODULES = ("score", "classifier")  # token-classification heads of transformers models


def apply_lora(model, r: int, alpha: int, dropout: float, target_modules: str):
    """Wrap with LoRA adapters; the classification head stays fully trainable (peft TOKEN_CLS).

    `all-linear` means every linear layer but the head: peft would otherwise put
    an adapter on the head too, which it also has to train in full.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    if target_modules == "all-linear":
        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                          if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in HEAD_MODULES})
    else:
        targets = [t.strip() for t in target_modules.split(",")]
    config = LoraConfig(task_type=TaskType.TOKEN_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets)
    return get_peft_model(model, config)


def prm_loss(logits: torch.Tensor, labels: torch.Tensor, soft_labels: torch.Tensor, mode: str) -> torch.Tensor:
    """Mean loss over the labelled (step-end) positions; see the module docstring."""
    mask = labels != IGNORE
    if not mask.any():
        return logits.sum() * 0.0  # a batch whose steps were all truncated away: no signal, keep the graph
    picked = logits[mask].float()
    if mode == "hard":
        return F.cross_entropy(picked, labels[mask])
    if mode == "soft":
        return F.binary_cross_entropy_with_logits(picked[:, 1] - picked[:, 0], soft_labels[mask].float())
    raise ValueError(f"unknown label mode {mode!r}; use hard or soft")


class PRMScorer:
    """Scores the steps of solutions with a trained PRM checkpoint (or an in-memory model)."""

    def __init__(self, model, tokenizer, step_separator: str = "\n", device: str | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.step_separator = step_separator
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.collate = PadCollator(tokenizer.pad_token_id)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, step_separator: str | None = None,
                        device: str | None = None) -> "PRMScorer":
        """Load a checkpoint written by `train_prm` (its step separator is read from train_config.json)."""
        import json

        p = Path(path)
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"no PRM checkpoint at {p}" + (" (the folder has no config.json)" if p.is_dir()
                                                                     else "") + ": give a folder written by "
                                    "`prm-data train --output-dir`")
        if step_separator is None:
            cfg = p / "train_config.json"
            step_separator = json.loads(cfg.read_text())["step_separator"] if cfg.exists() else "\n"
        tokenizer = load_tokenizer(str(p))
        return cls(load_model(str(p), tokenizer.pad_token_id), tokenizer, step_separator, device)

    @torch.no_grad()
    def score(self, items: list[tuple[str, list[str]]], batch_size: int = 16) -> list[list[float]]:
        """P(good) for every step of every (prompt, steps) item, in order.

        Nothing is truncated: a solution longer than the model's context raises,
        rather than silently scoring fewer steps.
        """
        out: list[list[float]] = []
        for start in range(0, len(items), batch_size):
            rows = [tokenize_example({"prompt": prompt, "completions": steps, "labels": [1] * len(steps)},
                                     self.tokenizer, self.step_separator)
                    for prompt, steps in items[start:start + batch_size]]
            batch = self.collate(rows)
            logits = self.model(input_ids=batch["input_ids"].to(self.device),
                                attention_mask=batch["attention_mask"].to(self.device)).logits
            probs = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
            for i, row in enumerate(rows):
                out.append([float(probs[i, j]) for j in step_positions(row["labels"])])
        return out
