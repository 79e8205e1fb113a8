"""The one record every labeler returns, and the columns labelers fill.

Monte Carlo values, OmegaPRM search results, progress advantages, tool checks,
judge votes and rubric scores all come back as `StepLabel`s, so they are
combined, stored (`step_labels` table) and audited the same way.

A labeler fills a `StepLabels` (one labeler's labels, column by column) with
`add(...)` per step instead of building one `StepLabel` object per step; it
reads as a sequence of `StepLabel`s (tests, aggregation, audits) and becomes
the `step_labels` Arrow table in bulk (`table`): the evidence of every label is
a set of typed columns the labeler declares, encoded to the stored JSON column
by DuckDB's `to_json` over a struct column, not by one `json.dumps` per label.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
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


# An evidence field whose values have no one shape (a list of heterogeneous check records): each value is
# encoded with json.dumps and embedded as it is. Every other field is an Arrow type, encoded in bulk.
JSON = "json"
_BASE = ("problem_id", "rollout_id", "step_index", "value", "hard_label", "confidence", "prompt_tokens",
         "completion_tokens", "calls")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class StepLabels(Sequence[StepLabel]):
    """One labeler's step labels, column by column: what a labeler fills and the label stage writes.

    `evidence` declares the labeler's evidence fields, name -> Arrow type (or
    `JSON`). A label may leave fields out (they are absent from its stored JSON,
    not null); a field it was not declared with is refused.
    """

    def __init__(self, labeler: str, labeler_version: str, evidence: Mapping[str, pa.DataType | str]):
        bad = [name for name in evidence if not _FIELD_NAME.match(name)]
        if bad:
            raise ValueError(f"{labeler}: evidence field names must be identifiers, got {bad}")
        self.labeler, self.labeler_version = labeler, labeler_version
        self.evidence_types = dict(evidence)
        self._base: dict[str, list] = {name: [] for name in _BASE}
        self._evidence: dict[str, list] = {name: [] for name in self.evidence_types}
        self._absent: dict[int, frozenset[str]] = {}  # row -> the declared fields its evidence leaves out

    def add(self, problem_id: str, rollout_id: str, step_index: int, value: float | None, hard_label: bool | None,
            confidence: float = 0.0, prompt_tokens: int = 0, completion_tokens: int = 0, calls: int = 0,
            evidence: Mapping | None = None) -> None:
        """Append one step's label (the fields of `StepLabel` but the labeler's name and version)."""
        evidence = evidence or {}
        row = len(self._base["problem_id"])
        if len(evidence) == len(self._evidence):
            try:
                for name, column in self._evidence.items():
                    column.append(evidence[name])
            except KeyError:
                for column in self._evidence.values():
                    del column[row:]
                self._add_partial(row, evidence)
        else:
            self._add_partial(row, evidence)
        b = self._base
        b["problem_id"].append(problem_id)
        b["rollout_id"].append(rollout_id)
        b["step_index"].append(step_index)
        b["value"].append(value)
        b["hard_label"].append(hard_label)
        b["confidence"].append(confidence)
        b["prompt_tokens"].append(prompt_tokens)
        b["completion_tokens"].append(completion_tokens)
        b["calls"].append(calls)

    def _add_partial(self, row: int, evidence: Mapping) -> None:
        unknown = set(evidence) - set(self._evidence)
        if unknown:
            raise ValueError(f"{self.labeler}: evidence fields {sorted(unknown)} are not declared "
                             f"(declared: {sorted(self._evidence)})")
        for name, column in self._evidence.items():
            column.append(evidence.get(name))
        self._absent[row] = frozenset(self._evidence) - set(evidence)

    def set_evidence(self, name: str, value) -> None:
        """Give every label so far the evidence field `name` = `value`."""
        if name not in self._evidence:
            raise ValueError(f"{self.labeler}: evidence field {name!r} is not declared")
        self._evidence[name] = [value] * len(self)
        self._absent = {row: rest for row, missing in self._absent.items() if (rest := missing - {name})}

    def extend(self, labels: Iterable[StepLabel]) -> None:
        """Append `labels`: another `StepLabels` of the same labeler column by column, else one by one."""
        if isinstance(labels, StepLabels) and (labels.labeler, labels.labeler_version, labels.evidence_types) == (
                self.labeler, self.labeler_version, self.evidence_types):
            offset = len(self)
            for mine, theirs in ((self._base, labels._base), (self._evidence, labels._evidence)):
                for name, column in mine.items():
                    column.extend(theirs[name])
            self._absent.update({offset + row: missing for row, missing in labels._absent.items()})
            return
        for label in labels:
            if (label.labeler, label.labeler_version) != (self.labeler, self.labeler_version):
                raise ValueError(f"a {label.labeler}/{label.labeler_version} label added to the labels of "
                                 f"{self.labeler}/{self.labeler_version}")
            self.add(label.problem_id, label.rollout_id, label.step_index, label.value, label.hard_label,
                     label.confidence, label.prompt_tokens, label.completion_tokens, label.calls, label.evidence)

    def __len__(self) -> int:
        return len(self._base["problem_id"])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("StepLabels index out of range")
        b, missing = self._base, self._absent.get(index, ())
        return StepLabel(b["problem_id"][index], b["rollout_id"][index], b["step_index"][index], self.labeler,
                         self.labeler_version, b["value"][index], b["hard_label"][index], b["confidence"][index],
                         b["prompt_tokens"][index], b["completion_tokens"][index], b["calls"][index],
                         {name: column[index] for name, column in self._evidence.items() if name not in missing})

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
        """These labels as `step_labels` rows: one Arrow array per column, the evidence JSON encoded in bulk."""
        schema, n = schema_for("step_labels"), len(self)
        constant = {"run_id": run_id, "labeler": self.labeler, "labeler_version": self.labeler_version}
        arrays = {}
        for f in schema:
            if f.name in constant:
                arrays[f.name] = pa.repeat(pa.scalar(constant[f.name], f.type), n)
            elif f.name == "evidence":
                arrays[f.name] = self._evidence_json()
            else:
                arrays[f.name] = pa.array(self._base[f.name], f.type)
        return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)

    def _evidence_json(self) -> pa.Array:
        """The evidence column: DuckDB's `to_json` of a struct of the fields, one struct per set of present fields."""
        n = len(self)
        if not self._evidence or n == 0:
            return pa.repeat(pa.scalar("{}", pa.string()), n)
        fields = sorted(self.evidence_types)  # stored with sorted keys, as json.dumps(sort_keys=True) did
        arrays = {name: self._evidence_array(name) for name in fields}
        if not self._absent:
            return _to_json(pa.StructArray.from_arrays([arrays[f] for f in fields], fields))
        by_missing: dict[frozenset[str], list[int]] = {}
        for row, missing in self._absent.items():
            by_missing.setdefault(missing, []).append(row)
        complete = np.ones(n, bool)
        complete[np.fromiter(self._absent, np.int64, len(self._absent))] = False
        groups = [(np.flatnonzero(complete), fields)] + [
            (np.asarray(rows, np.int64), [f for f in fields if f not in missing]) for missing, rows in by_missing.items()]
        pieces, order = [], []
        for rows, present in groups:
            if len(rows):
                take = pa.array(rows)
                pieces.append(_to_json(pa.StructArray.from_arrays([arrays[f].take(take) for f in present], present))
                              if present else pa.repeat(pa.scalar("{}", pa.string()), len(rows)))
                order.append(rows)
        position = np.empty(n, np.int64)
        position[np.concatenate(order)] = np.arange(n)
        return pa.concat_arrays(pieces).take(pa.array(position))

    def _evidence_array(self, name: str) -> pa.Array:
        kind, values = self.evidence_types[name], self._evidence[name]
        if kind == JSON:  # DuckDB embeds arrow.json values as they are
            encode = json.JSONEncoder(sort_keys=True, default=str).encode
            return pa.array([encode(v) for v in values], pa.json_())
        return pa.array(values, kind)


_DUCKDB: dict[int, duckdb.DuckDBPyConnection] = {}  # per process: an in-memory database, no tables: a JSON encoder
_DUCKDB_LOCK = threading.Lock()


def _to_json(struct: pa.StructArray) -> pa.Array:
    """Each struct as one JSON object (DuckDB `to_json`), in order; a cursor per call, so threads may share it."""
    with _DUCKDB_LOCK:
        pid = os.getpid()  # a forked child opens its own: a database is not carried across fork
        if pid not in _DUCKDB:  # (the parent's is left alone: closing it in the child would crash it)
            _DUCKDB[pid] = duckdb.connect()
        cursor = _DUCKDB[pid].cursor()  # a new connection costs ~100 ms; a cursor of one a few ms
    try:
        cursor.register("evidence", pa.table({"ev": struct}))  # (from_arrow(...).query is 3-5x slower here)
        out = cursor.sql("SELECT to_json(ev)::VARCHAR AS e FROM evidence").to_arrow_table()
        return out.column("e").combine_chunks().cast(pa.string())
    finally:
        cursor.close()


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
