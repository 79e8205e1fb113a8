-- TRL stepwise supervision (PRMTrainer's `prompt`, `completions`, `labels`), one row per rollout:
-- a scan of `stepwise_rows`, which the writer of the final labels built from the same run's steps and
-- labels (warehouse/queries/stepwise_rows.sql says how a row is cut), so this stays well under 1 s at
-- 10M step labels (benchmarks/warehouse_scale.py).
-- When several runs labelled the same rollout, the greatest run_id wins (pass $run_id to pick one);
-- a row's steps, labels and prompt come from that one run, never mixed. A winning row with no
-- completions (its first step has no kept label) leaves the rollout out: an older run's row never
-- stands in for it.
-- Only rollouts with rows from several runs are looked at twice (`relabelled`, small in the common case of
-- one run per rollout), so the scan is not joined with itself: 1.1 s -> 0.8 s at 10M step labels.
-- `run_id` (the run each row comes from) is not exported: the processbench config checks with it which rows
-- hold every step of their rollout (prm_data/exports/processbench.py).
WITH candidates AS (
    SELECT * FROM stepwise_rows WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
), relabelled AS (
    SELECT rollout_id, max(run_id) AS latest_run FROM candidates GROUP BY rollout_id HAVING count(*) > 1
)
SELECT problem_id, rollout_id, prompt, completions, labels, "values", label_sources, is_correct, policy_model,
       tests_passed, run_id
FROM candidates c
ANTI JOIN relabelled o ON o.rollout_id = c.rollout_id AND o.latest_run <> c.run_id
WHERE len(c.completions) > 0
ORDER BY problem_id, rollout_id;
