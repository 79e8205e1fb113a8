"""The one record every labeler returns, and the columns labelers fill.

Monte Carlo values, OmegaPRM search results, progress advantages, tool checks,
judge votes and rubric scores all come back as `StepLabel`s, so they are
combined, stored (`step_labels` table) and audited the same way.

A labeler fills a `StepLabels` (one labeler's labels, column by column) with
`add(...)` per step instead of building one `StepLabel` object per step; it
reads as a sequence of `StepLabel`s (tests, aggregation, audits) and becomes
the `step_labels` Arrow table in bulk (`table`): counts in typed buffers that
become Arrow arrays without a Python value per label, and the evidence dicts
(fields the labeler declares) encoded to the stored JSON column in one encoder
call per 65k labels (prm_data/evidence_json.py), not by one `json.dumps` per label.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from prm_data.evidence_json import encode_evidence
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
    """The `step_labels` rows of `labels` as one Arrow table.

    A `StepLabels` is converted in bulk (`StepLabels.table`); a plain list of
    `StepLabel`s column by column with one JSON encoding per label (same content
    as `to_row` per label). `Warehouse.write_shard` casts it to the table's
    schema (prm_data/schema.py), which checks types and required columns.
    """
    if isinstance(labels, StepLabels):
        return labels.table(run_id)
    schema = schema_for("step_labels")
    columns = {name: [getattr(label, name) for label in labels] for name in _COLUMNS}
    columns["run_id"] = [run_id] * len(labels)
    encode = json.JSONEncoder(sort_keys=True, default=str).encode
    columns["evidence"] = [encode(label.evidence) for label in labels]
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)


# Evidence field kind for values whose shape varies from record to record (a list of heterogeneous check
# records): declared like any other field, stored as its JSON like every evidence value.
JSON = "json"
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RUNS = ("problem_id", "rollout_id")  # runs of equal values: a labeler adds a rollout's steps one after another
_COUNTS = ("step_index", "prompt_tokens", "completion_tokens", "calls")  # typed buffers: required integers
_MAYBE = ("value", "hard_label", "confidence")  # Python lists: None is a value (null)


class StepLabels(Sequence[StepLabel]):
    """One labeler's step labels, column by column: what a labeler fills and the label stage writes.

    `evidence` declares the labeler's evidence fields, name -> Arrow type (or
    `JSON`): the shape of each value, checked against the labelers' own output
    by tests/test_records_columns.py. A label may leave fields out (they are
    absent from its stored JSON, not null); a field it was not declared with is
    refused.
    """

    def __init__(self, labeler: str, labeler_version: str, evidence: Mapping[str, pa.DataType | str]):
        bad = [name for name in evidence if not _FIELD_NAME.match(name)]
        if bad:
            raise ValueError(f"{labeler}: evidence field names must be identifiers, got {bad}")
        self.labeler, self.labeler_version = labeler, labeler_version
        self.evidence_types = dict(evidence)
        self._declared = frozenset(self.evidence_types)
        # per id column, the value of each run of labels that share it and the row where the run begins
        self._run_values: dict[str, list] = {name: [] for name in _RUNS}
        self._run_starts: dict[str, array] = {name: array("q") for name in _RUNS}
        self._counts: dict[str, array] = {name: array("i" if name == "step_index" else "q") for name in _COUNTS}
        self._maybe: dict[str, list] = {name: [] for name in _MAYBE}
        self._evidence: list[dict] = []  # one dict per label, never changed in place; encoded in bulk

    def add(self, problem_id: str, rollout_id: str, step_index: int, value: float | None, hard_label: bool | None,
            confidence: float = 0.0, prompt_tokens: int = 0, completion_tokens: int = 0, calls: int = 0,
            evidence: Mapping | None = None) -> None:
        """Append one step's label (the fields of `StepLabel` but the labeler's name and version).

        The evidence dict is kept as it is given, as a `StepLabel` keeps it (no
        copy: a labeler hands a new dict per step and does not change it after).
        """
        if type(evidence) is not dict:
            evidence = {} if evidence is None else dict(evidence)
        if not evidence.keys() <= self._declared:
            raise ValueError(f"{self.labeler}: evidence fields {sorted(set(evidence) - self._declared)} are not "
                             f"declared (declared: {sorted(self._declared)})")
        counts, row = self._counts, len(self._evidence)
        try:
            counts["step_index"].append(step_index)
            counts["prompt_tokens"].append(prompt_tokens)
            counts["completion_tokens"].append(completion_tokens)
            counts["calls"].append(calls)
        except (TypeError, OverflowError) as exc:
            name = next(name for name, column in counts.items() if len(column) == row)  # the first not appended
            for column in counts.values():
                del column[row:]
            given = {"step_index": step_index, "prompt_tokens": prompt_tokens,
                     "completion_tokens": completion_tokens, "calls": calls}[name]
            raise ValueError(f"{self.labeler}: step_labels.{name} needs an integer in its column's range, "
                             f"got {given!r}: {exc}") from None
        problems, rollouts = self._run_values["problem_id"], self._run_values["rollout_id"]
        if not row or rollouts[-1] != rollout_id:  # the same object again: != is an identity check first
            rollouts.append(rollout_id)
            self._run_starts["rollout_id"].append(row)
        if not row or problems[-1] != problem_id:
            problems.append(problem_id)
            self._run_starts["problem_id"].append(row)
        maybe = self._maybe
        maybe["value"].append(value)
        maybe["hard_label"].append(hard_label)
        maybe["confidence"].append(confidence)
        self._evidence.append(evidence)

    def set_evidence(self, name: str, value) -> None:
        """Give every label so far the evidence field `name` = `value`."""
        if name not in self._declared:
            raise ValueError(f"{self.labeler}: evidence field {name!r} is not declared")
        self._evidence = [{**evidence, name: value} for evidence in self._evidence]  # the labeler's dicts untouched

    def extend(self, labels: Iterable[StepLabel]) -> None:
        """Append `labels`: another `StepLabels` of the same labeler column by column, else one by one."""
        if isinstance(labels, StepLabels) and (labels.labeler, labels.labeler_version, labels.evidence_types) == (
                self.labeler, self.labeler_version, self.evidence_types):
            for name in _RUNS:
                self._run_values[name].extend(labels._run_values[name])
                self._run_starts[name].extend(start + len(self) for start in labels._run_starts[name])
            for mine, theirs in ((self._counts, labels._counts), (self._maybe, labels._maybe)):
                for name, column in mine.items():
                    column.extend(theirs[name])
            self._evidence.extend(labels._evidence)  # never changed in place (set_evidence makes new dicts)
            return
        for label in labels:
            if (label.labeler, label.labeler_version) != (self.labeler, self.labeler_version):
                raise ValueError(f"a {label.labeler}/{label.labeler_version} label added to the labels of "
                                 f"{self.labeler}/{self.labeler_version}")
            self.add(label.problem_id, label.rollout_id, label.step_index, label.value, label.hard_label,
                     label.confidence, label.prompt_tokens, label.completion_tokens, label.calls, label.evidence)

    def __len__(self) -> int:
        return len(self._evidence)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("StepLabels index out of range")
        c, m = self._counts, self._maybe
        return StepLabel(self._id_at("problem_id", index), self._id_at("rollout_id", index), c["step_index"][index],
                         self.labeler, self.labeler_version, m["value"][index], m["hard_label"][index],
                         m["confidence"][index],
                         c["prompt_tokens"][index], c["completion_tokens"][index], c["calls"][index],
                         dict(self._evidence[index]))

    def _id_at(self, name: str, row: int):
        return self._run_values[name][bisect_right(self._run_starts[name], row) - 1]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # mutable, like a list

    def __add__(self, other: Iterable[StepLabel]) -> list[StepLabel]:
        return list(self) + list(other)

    def __radd__(self, other: Iterable[StepLabel]) -> list[StepLabel]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"StepLabels({self.labeler!r}, {self.labeler_version!r}, {len(self)} labels)"

    def table(self, run_id: str) -> pa.Table:
        """These labels as `step_labels` rows: one Arrow array per column, the evidence JSON encoded in bulk.

        Checked as `schema.to_table` checks rows, a column at a time: a value of
        the wrong type or a null in a required column is a ValueError naming
        the column.
        """
        schema = schema_for("step_labels")
        columns = {f.name: self.column(f, run_id) for f in schema}
        return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)

    def column(self, f: pa.Field, run_id: str) -> pa.Array | pa.ChunkedArray:
        """The `step_labels` column of field `f` (one of schema_for("step_labels")'s), checked."""
        constant = {"run_id": run_id, "labeler": self.labeler, "labeler_version": self.labeler_version}
        if f.name in constant:
            out = pa.repeat(pa.scalar(constant[f.name], f.type), len(self))
        elif f.name == "evidence":
            out = encode_evidence(self._evidence, self.evidence_types)
        elif f.name in self._counts:  # the typed buffer's bytes (a copy: the labels may grow after)
            out = pa.Array.from_buffers(f.type, len(self), [None, pa.py_buffer(self._counts[f.name].tobytes())])
        else:
            try:
                out = self._runs_column(f) if f.name in self._run_values else pa.array(self._maybe[f.name], f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
                raise ValueError(f"step_labels.{f.name}: {exc}") from exc
        if not f.nullable and out.null_count:
            raise ValueError(f"step_labels.{f.name} is required but a label has no value")
        return out

    def _runs_column(self, f: pa.Field) -> pa.Array:
        """An id column from its runs: each run's value converted once, then repeated over the run's rows."""
        values, starts = pa.array(self._run_values[f.name], f.type), np.frombuffer(self._run_starts[f.name], np.int64)
        lengths = np.diff(starts, append=len(self))
        return values.take(pa.array(np.repeat(np.arange(len(starts), dtype=np.int32), lengths)))


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
