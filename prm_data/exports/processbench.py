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

from prm_data.exports.latest_rows import latest_per_key
from prm_data.warehouse import Warehouse, load_query, retry_torn_reads


def _first_step_where(flag: np.ndarray, rollout: np.ndarray, step: np.ndarray, n: int) -> np.ndarray:
    """Per rollout, the step index of its first row (rows are in step order) where `flag` holds; -1 for none."""
    out = np.full(n, -1, np.int64)
    rows = np.flatnonzero(flag)
    rollouts, first = np.unique(rollout[rows], return_index=True)
    out[rollouts] = step[rows[first]]
    return out


def build_processbench_rows(warehouse: Warehouse, policy: str, run_id: str | None) -> pa.Table:
    """The `processbench` rows (id, problem_id, rollout_id, generator, problem, steps, label,
    final_answer_correct), ordered by problem_id, rollout_id."""
    params = {"policy": policy, "run_id": run_id}
    con = warehouse.connect()
    try:
        rollouts = retry_torn_reads(lambda: con.sql(load_query("export_processbench"), params=params)
                                    .to_arrow_table())
        con.register("processbench_rollouts", pa.table({
            "rollout_id": rollouts["rollout_id"], "ord": pa.array(np.arange(rollouts.num_rows), pa.int64())}))
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
    label = np.where((first_bad >= 0) & ((first_gap < 0) | (first_bad < first_gap)), first_bad,
                     np.where(first_gap < 0, -1, -2))  # -2: left out (an unknown step before any known error)
    counts = np.bincount(rollout, minlength=n)
    exported = (counts > 0) & (label != -2)  # a rollout with no steps has no row either
    in_export = exported[rollout]
    offsets = np.r_[0, np.cumsum(counts[exported])]
    texts = steps["text"].take(pa.array(keep[in_export]))
    rows = rollouts.filter(pa.array(exported))
    return pa.table({
        "id": rows["rollout_id"],
        "problem_id": rows["problem_id"],
        "rollout_id": rows["rollout_id"],
        "generator": rows["generator"],
        "problem": rows["problem"],
        "steps": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), texts.combine_chunks()),
        "label": pa.array(label[exported], pa.int32()),
        "final_answer_correct": rows["final_answer_correct"],
    })
