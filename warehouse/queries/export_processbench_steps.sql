-- ProcessBench export, part 2 of 2 (prm_data/exports/processbench.py): every step of the rollouts in
-- `processbench_rollouts` (a relation the caller registers: `rollout_id` and its position `ord` in
-- the export), flat and unsorted, with the final label under $policy (in $run_id, or any run):
-- `gap` = no kept, non-null label (so the steps after it are unknown), `bad` = kept and wrong.
-- Where several runs wrote a step or its final label, every pair comes back with both run ids
-- (`step_run`, `label_run`, NULL when the step has no final label) and the caller keeps the step of
-- the greatest step_run with the label of the greatest label_run, as the latest-row rule says.
WITH fl AS (
    SELECT rollout_id, step_index, run_id, kept, label FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
)
SELECT o.ord,
       s.step_index,
       s.run_id AS step_run,
       s.text,
       f.run_id AS label_run,
       f.kept IS NOT TRUE OR f.label IS NULL AS gap,
       coalesce(f.kept AND f.label = false, false) AS bad
FROM steps s
JOIN processbench_rollouts o ON o.rollout_id = s.rollout_id
LEFT JOIN fl f ON f.rollout_id = s.rollout_id AND f.step_index = s.step_index;
