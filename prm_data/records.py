"""The one record every labeler returns.

Monte Carlo values, OmegaPRM search results, progress advantages, tool checks,
judge votes and rubric scores all come back as `StepLabel`s, so they are
combined, stored (`step_labels` table) and audited the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from prm_data.schema import schema_for


@dataclass(frozen=True)
class StepLabel:
    problem_id: str
    rollout_id: str
    step_index: int
    labeler: str
    labeler_version: str
    value: float | None  # soft value; for progress labels an advantage in [-1, 1]
    hard_label: bool | None  # True = good step, False = bad, None = abstain
    confidence: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    evidence: dict = field(default_factory=dict)

    def to_row(self, run_id: str) -> dict:
        row = asdict(self)
        row["run_id"] = run_id
        row["evidence"] = json.dumps(self.evidence, sort_keys=True, default=str)
        return row


_COLUMNS = ("problem_id", "rollout_id", "step_index", "labeler", "labeler_version", "value", "hard_label",
            "confidence", "prompt_tokens", "completion_tokens", "calls")


def labels_table(labels: Sequence[StepLabel], run_id: str) -> pa.Table:
    """The `step_labels` rows of `labels` as one Arrow table, built column by column (no row dicts).

    Same content as `to_row` per label; `Warehouse.write_shard` casts it to the
    table's schema (prm_data/schema.py), which checks types and required columns.
    """
    schema = schema_for("step_labels")
    columns = {name: [getattr(label, name) for label in labels] for name in _COLUMNS}
    columns["run_id"] = [run_id] * len(labels)
    encode = json.JSONEncoder(sort_keys=True, default=str).encode
    columns["evidence"] = [encode(label.evidence) for label in labels]
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_confidence(successes: int, n: int) -> float:
    """1 - width of the Wilson interval: 0 with no samples, towards 1 with many."""
    lo, hi = wilson_interval(successes, n)
    return 1.0 - (hi - lo)
