-- ProcessBench export (prm_data/exports/processbench.py): which rollouts' rows can be taken from the stepwise
-- rows of the same export. Flat, unsorted, no text: every step row (`is_label` false) and every final label
-- under $policy (in $run_id, or any run; `is_label` true) of a rollout the caller's `processbench_stepwise`
-- (`row`, `rollout_id`, `run_id`, `num_steps`: the stepwise row of each rollout, the run it comes from and
-- its number of steps) holds, with that `row`, the step index, and whether it `fits` the row: it comes
-- from the row's run, its step index is one of the row's 0..n-1, and for a label, it is kept and not null.
-- The caller takes a rollout's steps and label from its stepwise row when every one of the rollout's steps
-- and labels fits, one of each for every step 0..n-1: the rows the latest-row rule picks are then that
-- run's, and the stepwise row holds them all. Matching here returns integers and booleans, no rollout or
-- run id strings.
WITH sw AS (
    SELECT "row", rollout_id, run_id, num_steps FROM processbench_stepwise
)
SELECT false AS is_label, sw."row", s.step_index,
       s.run_id IS NOT DISTINCT FROM sw.run_id AND s.step_index >= 0 AND s.step_index < sw.num_steps AS fits
FROM steps s
JOIN sw ON sw.rollout_id = s.rollout_id
UNION ALL
SELECT true AS is_label, sw."row", f.step_index,
       f.run_id IS NOT DISTINCT FROM sw.run_id AND f.step_index >= 0 AND f.step_index < sw.num_steps
           AND coalesce(f.kept AND f.label IS NOT NULL, false) AS fits
FROM final_labels f
JOIN sw ON sw.rollout_id = f.rollout_id
WHERE f.policy = $policy AND ($run_id IS NULL OR f.run_id = $run_id);
