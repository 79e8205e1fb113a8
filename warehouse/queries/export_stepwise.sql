-- TRL stepwise supervision (PRMTrainer's `prompt`, `completions`, `labels`), one row per rollout.
-- A rollout contributes the longest run of steps, from step 0, whose final label under $policy is
-- kept and not null; the first step without one ends the row (steps after it are unknown, not good).
-- `values` are the soft labels (the aggregated value, or 1.0/0.0 from the hard label when the
-- aggregation gave none), `label_sources` the labelers that decided each step.
-- When several runs labelled the same step, the greatest run_id wins (pass $run_id to pick one).
WITH
-- include: _latest_rows
, fl AS (
    SELECT * FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
    QUALIFY row_number() OVER (PARTITION BY rollout_id, step_index ORDER BY run_id DESC) = 1
), labeled AS (
    SELECT st.rollout_id, st.step_index, st.text, fl.label, fl.value, fl.sources, fl.kept,
           min(CASE WHEN fl.kept IS NOT TRUE OR fl.label IS NULL THEN st.step_index END)
               OVER (PARTITION BY st.rollout_id) AS first_gap
    FROM st LEFT JOIN fl USING (rollout_id, step_index)
    WHERE st.rollout_id IN (SELECT rollout_id FROM fl)
)
SELECT r.problem_id,
       l.rollout_id,
       any_value(p.question) AS prompt,
       list(l.text ORDER BY l.step_index) AS completions,
       list(l.label ORDER BY l.step_index) AS labels,
       list(coalesce(l.value, CASE WHEN l.label THEN 1.0 ELSE 0.0 END) ORDER BY l.step_index) AS "values",
       list(coalesce(l.sources, []::VARCHAR[]) ORDER BY l.step_index) AS label_sources,
       any_value(r.is_correct) AS is_correct,
       any_value(r.policy_model) AS policy_model
FROM labeled l
JOIN r USING (rollout_id)
JOIN p ON p.problem_id = r.problem_id
WHERE l.first_gap IS NULL OR l.step_index < l.first_gap
GROUP BY r.problem_id, l.rollout_id
ORDER BY r.problem_id, l.rollout_id;
