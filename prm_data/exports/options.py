"""The options of the trainer configs (`rl_rewards`, `openrlhf`, `verifier_sft`), apart from their builders.

`ExportConfig` holds them, and `prm_data.config` loads it when a run config is read:
this module imports neither `datasets` nor the builders (prm_data/exports/formats.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prm_data.exports.openrlhf import OpenRLHFConfig
from prm_data.exports.rl_rewards import RewardTransformConfig

TRAINER_FORMATS = ("rl_rewards", "openrlhf", "verifier_sft")  # formats.FEATURES declares their columns


class TrainerExportOptions(BaseModel):
    """Options of the `rl_rewards`, `openrlhf` and `verifier_sft` configs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rewards: RewardTransformConfig = Field(default_factory=RewardTransformConfig,
                                           description="The step-reward transform of the rl_rewards config.")
    tokenizer: str | None = Field(None, description="A local tokenizer folder or .gguf file; when set, rl_rewards "
                                  "also gives each step's last token index in the tokenized response.")
    openrlhf: OpenRLHFConfig = Field(default_factory=OpenRLHFConfig,
                                     description="Placeholder and reward tokens of the openrlhf config.")
