-- ProcessBench export (prm_data/exports/processbench.py): which rollouts' rows can be taken from the stepwise
-- rows of the same export. Flat, unsorted, no text: every step row (`is_label` false) and every final label
-- under $policy (in $run_id, or any run; `is_label` true) with its rollout, step index and run, and for a
-- label whether it is kept and not null (`known`). The caller takes a rollout's steps and label from its
-- stepwise row when the row's run wrote every one of the rollout's steps and labels, one each for steps
-- 0..n-1 (n: the row's number of steps), every label known: the rows the latest-row rule picks are then
-- that run's, and the stepwise row holds them all.
SELECT false AS is_label, rollout_id, step_index, run_id, true AS known FROM steps
UNION ALL
SELECT true AS is_label, rollout_id, step_index, run_id, coalesce(kept AND label IS NOT NULL, false) AS known
FROM final_labels
WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id);
