"""The `processbench` export: a ProcessBench-style evaluation set (Zheng et al., 2024, arXiv:2412.06559).

One row per rollout with every step and `label` = the index of the earliest wrong step,
-1 when every step is good. The label comes from the final labels under the export's
policy: the first step labelled bad, provided every step before it has a kept, non-null
label; a rollout whose steps are all kept and good gets -1; any other rollout (an
unknown step before any known error) is left out. Where several runs wrote a row, the
greatest run_id wins, per rollout, per problem, per step and per step's final label.

Two queries (warehouse/queries/export_processbench.sql, export_processbench_steps.sql)
give the rollouts in the export's order and their steps, flat; the latest row of each step
is kept (prm_data/exports/latest_rows.py), each rollout's steps are put in order and its
label found with numpy over the whole export. Gathering and sorting the steps in SQL
(a GROUP BY per step to pick the latest row, then one per rollout to build its list)
took 3-5x the stepwise export's whole query at 10M step labels (benchmarks/export_scale.py).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prm_data.exports.latest_rows import latest_per_key
from prm_data.exports.step_offsets import list_offsets
from prm_data.warehouse import Warehouse, load_query, retry_torn_reads


def _first_step_where(flag: np.ndarray, rollout: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """Per rollout, the step index of its first row (rows are in step order) where `flag` holds; -1 for none."""
    out = np.full(n, -1, np.int64)
    rows = np.flatnonzero(flag)
    rollouts, first = np.unique(rollout[rows], return_index=True)
    out[rollouts] = step[rows[first]]
    return out


def covered_by_stepwise(warehouse: Warehouse, stepwise: pa.Table, runs: pa.ChunkedArray, policy: str,
                        run_id: str | None) -> np.ndarray:
    """Per stepwise row, whether it holds every step and label of its rollout that the latest-row rule picks.

    True when the row's run (`runs`) wrote every step row and every final label of the rollout under
    `policy`, one of each for steps 0..n-1 where n is the row's number of steps, and every label is kept
    and not null: no other run's row can then win, and the stepwise row was built from exactly these
    steps and labels (prm_data/stepwise_rows.py, when its final labels were written).
    The query matches each step and label with its stepwise row and run (no string comes back): matching
    the 6.7M rollout and run ids of 10M step labels here took 1.6 s against 0.9 s for the whole query.
    """
    n = stepwise.num_rows
    lengths = np.asarray(pc.list_value_length(stepwise["completions"]).to_numpy(zero_copy_only=False), np.int64)
    con = warehouse.connect()
    try:
        con.register("processbench_stepwise", pa.table({"row": pa.array(np.arange(n), pa.int64()),
                                                        "rollout_id": stepwise["rollout_id"], "run_id": runs,
                                                        "num_steps": pa.array(lengths, pa.int64())}))
        sql = load_query("export_processbench_coverage")
        flat = retry_torn_reads(lambda: con.sql(sql, params={"policy": policy, "run_id": run_id}).to_arrow_table())
    finally:
        con.close()
    row = np.asarray(flat["row"].to_numpy(), np.int64)
    fits = np.asarray(pc.fill_null(flat["fits"], False).to_numpy(zero_copy_only=False), bool)
    covered = np.ones(n, bool)
    covered[row[~fits]] = False
    # every fitting step and label in its slot (2 per step: its step row, its label): a covered row has
    # exactly one in each of its slots, so it also has n of each and no duplicate
    starts = np.r_[0, np.cumsum(lengths)]
    slot = 2 * (starts[row[fits]] + np.asarray(flat["step_index"].to_numpy(), np.int64)[fits]) + np.asarray(
        flat["is_label"].to_numpy(zero_copy_only=False), bool)[fits]
    filled = np.bincount(slot, minlength=2 * int(starts[-1])).reshape(-1, 2)
    wrong_steps = np.flatnonzero((filled != 1).any(axis=1))  # flat steps missing a row or a label, or with two
    covered[np.searchsorted(starts, wrong_steps, side="right") - 1] = False
    return covered


def _stepwise_row_of(rollout_ids: pa.ChunkedArray, stepwise_ids: pa.ChunkedArray) -> np.ndarray:
    """Per rollout, the stepwise row of the same rollout id, -1 for none.

    The rollouts' ids are distinct (export_processbench.sql keeps one row per rollout), so when both
    columns hold the same ids in the same order (the common case: both are ordered by problem and
    rollout) row i is row i, with no hash lookup (0.25 s for 666k rollouts)."""
    if rollout_ids.type == stepwise_ids.type and rollout_ids.equals(stepwise_ids):
        return np.arange(len(rollout_ids), dtype=np.int64)
    return np.asarray(pc.index_in(rollout_ids, value_set=stepwise_ids.combine_chunks()).fill_null(-1).to_numpy(),
                      np.int64)


def _gather_steps(warehouse: Warehouse, rollouts: pa.Table, gathered: np.ndarray,
                  params: dict) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """The rows `gathered` of `rollouts`, by query: per row its label (-2: left out, an unknown step before
    any known error) and its steps' texts, flat in row order, with each row's number of steps."""
    label = np.full(rollouts.num_rows, -2, np.int64)
    counts = np.zeros(rollouts.num_rows, np.int64)
    if not len(gathered):
        return label, counts, pa.array([], pa.string()), np.zeros(0, np.int64)
    con = warehouse.connect()
    try:
        con.register("processbench_rollouts", pa.table({
            "rollout_id": rollouts["rollout_id"].take(pa.array(gathered)), "ord": pa.array(gathered, pa.int64())}))
        steps = retry_torn_reads(lambda: con.sql(load_query("export_processbench_steps"), params=params)
                                 .to_arrow_table())
    finally:
        con.close()
    key = (np.asarray(steps["ord"].to_numpy(), np.int64) << 32) + (
        np.asarray(steps["step_index"].to_numpy(), np.int64) + 2**31)
    keep = latest_per_key(key, steps["step_run"], steps["label_run"])  # in (rollout, step_index) order
    rollout = np.asarray(steps["ord"].to_numpy(), np.int64)[keep]
    step = np.asarray(steps["step_index"].to_numpy(), np.int64)[keep]
    gap = np.asarray(steps["gap"].to_numpy(zero_copy_only=False), bool)[keep]
    bad = np.asarray(steps["bad"].to_numpy(zero_copy_only=False), bool)[keep]
    n = rollouts.num_rows
    first_gap = _first_step_where(gap, rollout, step, n)
    first_bad = _first_step_where(bad, rollout, step, n)
    label[:] = np.where((first_bad >= 0) & ((first_gap < 0) | (first_bad < first_gap)), first_bad,
                        np.where(first_gap < 0, -1, -2))
    counts[:] = np.bincount(rollout, minlength=n)
    label[counts == 0] = -2  # a rollout with no steps has no row
    return label, counts, steps["text"].take(pa.array(keep)).combine_chunks(), rollout


def _first_bad_of_rows(stepwise: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Per stepwise row in `rows`, the index of its first step labelled bad, -1 when every label is good."""
    labels, offsets = list_offsets(stepwise["labels"])
    good = np.asarray(pc.fill_null(labels, True).to_numpy(zero_copy_only=False), bool)
    out = np.full(stepwise.num_rows, -1, np.int64)
    bad = np.flatnonzero(~good)
    owner = np.searchsorted(offsets, bad, side="right") - 1
    first_rows, first = np.unique(owner, return_index=True)
    out[first_rows] = bad[first] - offsets[first_rows]
    return out[rows]


def build_processbench_rows(warehouse: Warehouse, policy: str, run_id: str | None,
                            stepwise: pa.Table | None = None, stepwise_runs: pa.ChunkedArray | None = None) -> pa.Table:
    """The `processbench` rows (id, problem_id, rollout_id, generator, problem, steps, label,
    final_answer_correct), ordered by problem_id, rollout_id.

    With the export's stepwise rows (and the run of each, `stepwise_runs`), a rollout whose stepwise row
    holds every step and label it has (`covered_by_stepwise`, the common case) takes its steps from that
    row and its label from the row's labels; only the other rollouts' steps are gathered by query.
    """
    params = {"policy": policy, "run_id": run_id}
    rollouts = retry_torn_reads(lambda: warehouse.query(load_query("export_processbench"), params))
    n = rollouts.num_rows
    source = np.full(n, -1, np.int64)  # per rollout, the stepwise row it is taken from, or -1
    if stepwise is not None and stepwise.num_rows and n:
        covered = covered_by_stepwise(warehouse, stepwise, stepwise_runs, policy, run_id)
        at = _stepwise_row_of(rollouts["rollout_id"], stepwise["rollout_id"])
        source = np.where((at >= 0) & covered[np.maximum(at, 0)], at, -1)
    taken = source >= 0
    label, counts, gathered_texts, _ = _gather_steps(warehouse, rollouts, np.flatnonzero(~taken), params)
    # the stepwise rows' list offsets, without their texts (those are copied into one array only when some
    # row is not its own stepwise row, below)
    if taken.any() and stepwise["completions"].null_count:
        raise ValueError("a list column of the export has null rows")
    sw_offsets = (np.r_[0, np.cumsum(pc.list_value_length(stepwise["completions"]).to_numpy(zero_copy_only=False))]
                  .astype(np.int64) if taken.any() else np.zeros(1, np.int64))
    label[taken] = _first_bad_of_rows(stepwise, source[taken]) if taken.any() else label[taken]
    counts[taken] = np.diff(sw_offsets)[source[taken]]
    exported = label != -2
    # each exported row's steps: a range of the stepwise rows' flat texts, or of the gathered ones after them
    gathered_starts = np.r_[0, np.cumsum(np.where(taken, 0, counts))][:-1] + int(sw_offsets[-1])
    starts = gathered_starts.copy()
    starts[taken] = sw_offsets[source[taken]]
    starts = starts[exported]
    lengths = counts[exported]
    offsets = np.r_[0, np.cumsum(lengths)]
    rows = rollouts.filter(pa.array(exported))
    label = pa.array(label[exported], pa.int32())
    if stepwise is not None and n == stepwise.num_rows and exported.all() and (source == np.arange(n)).all():
        return _beside_stepwise(rows, stepwise, label)  # every row is its stepwise row, in the same order
    sw_texts = list_offsets(stepwise["completions"])[0] if taken.any() else pa.array([], pa.string())
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    texts = pa.concat_arrays([sw_texts.cast(pa.string()), gathered_texts.cast(pa.string())]).take(pa.array(index))
    return pa.table({
        "id": rows["rollout_id"],
        "problem_id": rows["problem_id"],
        "rollout_id": rows["rollout_id"],
        "generator": rows["generator"],
        "problem": rows["problem"],
        "steps": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), texts),
        "label": label,
        "final_answer_correct": rows["final_answer_correct"],
    })


# processbench column -> the stepwise column it equals when every row is its stepwise row
_STEPWISE_COLUMN = {"id": "rollout_id", "problem_id": "problem_id", "rollout_id": "rollout_id",
                    "generator": "policy_model", "problem": "prompt", "final_answer_correct": "is_correct"}


def _beside_stepwise(rows: pa.Table, stepwise: pa.Table, label: pa.Array) -> pa.Table:
    """The rows when each is its stepwise row in the same order: the steps are the stepwise row's, and
    every other column that holds the same values as its stepwise column is that column itself.

    The same memory, not an equal copy: the export splits a column several configs share once
    (prm_data/export.py's _Splitter), which saves copying the problems and steps again (0.35 s at 10M
    step labels). A column that differs (a later run rewrote a problem's text, say) keeps its own values.
    """
    def same(name: str, sw_name: str):
        own, theirs = rows[name], stepwise[sw_name]
        return theirs if own.type == theirs.type and own.equals(theirs) else own

    columns = {name: same("rollout_id" if name == "id" else name, sw) for name, sw in _STEPWISE_COLUMN.items()}
    return pa.table({**columns, "steps": stepwise["completions"], "label": label})
