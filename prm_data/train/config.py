"""The PRM training config: one frozen model, every field documented, TRL's PRMConfig defaults.

Defaults follow TRL's `PRMConfig` (learning rate 1e-5, max length 1024, step
separator "\\n") for a pretrained base model; a tiny model trained from scratch
(tests, `deploy/gpu_check.sh`) needs a larger learning rate, e.g. 3e-3.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    """How to fine-tune a token-classification PRM on an exported stepwise dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field(..., description="Export folder (prm-data export --out) or Hub dataset repo id.")
    model: str = Field(..., description="Base model: a checkpoint folder or Hub id with weights, or a folder / "
                       "config.json without weights (the model is then initialised from the config).")
    tokenizer: str | None = Field(None, description="Tokenizer folder or id; default: the model's.")
    output_dir: str = Field("checkpoints/prm", description="Where the checkpoint and training log are written.")
    split: str = Field("train", description="Split of the stepwise export to train on.")
    label_mode: Literal["hard", "soft"] = Field(
        "hard", description="hard: cross-entropy on `labels` (PRMTrainer); soft: binary cross-entropy of "
        "P(good) against `values` (Monte Carlo soft labels, Math-Shepherd soft estimation).")
    step_separator: str = Field("\n", description="Appended after every step; the PRM predicts at its last "
                                "token (TRL PRMTrainer's convention).")
    max_length: int | None = Field(1024, ge=8, description="Truncate prompt + steps to this many tokens.")
    max_completion_length: int | None = Field(None, ge=1, description="Truncate the steps to this many tokens.")
    train_on_last_step_only: bool = Field(False, description="Supervise only the last step (outcome-style).")
    learning_rate: float = Field(1e-5, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="Share of steps with linear warmup.")
    lr_scheduler: str = Field("linear", description="transformers scheduler name (linear, cosine, constant).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    per_device_batch_size: int = Field(8, ge=1, description="Sequences per device per micro-batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the data (when max_steps is not set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides num_epochs.")
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, full precision on CPU.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    lora: bool = Field(False, description="Train LoRA adapters (peft) plus the classification head only.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.05, ge=0, le=1, description="LoRA dropout.")
    lora_target_modules: str = Field("all-linear", description="peft target_modules ('all-linear' or a comma list).")
    seed: int = Field(0, description="Seed of initialisation, shuffling and dropout.")
    logging_steps: int = Field(10, ge=1, description="Log loss, learning rate and gradient norm every this many "
                               "optimizer steps.")
    eval_split: str | None = Field("test", description="Split evaluated during training (eval loss); skipped "
                                   "when the export has none (a small export may have no test split).")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every this many optimizer steps; None = "
                                   "at every epoch's end and after the last step.")
    report_to: tuple[str, ...] = Field((), description="Experiment trackers, as transformers' `report_to`: "
                                       "tensorboard (tensorboardX or tensorboard; event files in "
                                       "output_dir/prm-data), wandb, mlflow, ... (accelerate's trackers; the "
                                       "package must be installed). The metrics always go to train_log.jsonl.")
    progress_bar: bool = Field(True, description="Show a progress bar of the optimizer steps (main process).")
