-- TRL stepwise supervision (PRMTrainer's `prompt`, `completions`, `labels`), one row per rollout.
-- A rollout contributes the longest run of steps, from step 0, whose final label under $policy is
-- kept and not null; the first step without one ends the row (steps after it are unknown, not good).
-- `values` are the soft labels (the aggregated value, or 1.0/0.0 from the hard label when the
-- aggregation gave none), `label_sources` the labelers that decided each step.
-- When several runs labelled the same rollout, the greatest run_id wins (pass $run_id to pick one);
-- a rollout's steps come from the run of its latest `rollouts` row, its labels from one run, never mixed.
-- Each rollout's steps are gathered once, as a list of structs sorted by step index, and cut at the
-- first gap: no window over steps and no ordered aggregates, which made this query 2x slower at 10M
-- step labels (benchmarks/warehouse_scale.py).
WITH
p AS (
    SELECT * FROM problems QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY run_id DESC) = 1
), r AS (
    SELECT * FROM rollouts QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY run_id DESC) = 1
), fl_run AS (
    SELECT rollout_id, max(run_id) AS run_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id) GROUP BY rollout_id
), fl AS (
    SELECT f.* FROM final_labels f JOIN fl_run USING (rollout_id, run_id) WHERE f.policy = $policy
), st AS (
    SELECT s.* FROM steps s JOIN r USING (rollout_id, run_id)
), gathered AS (
    SELECT st.rollout_id,
           list_sort(list({'i': st.step_index, 'text': st.text,
                           'ok': fl.kept IS TRUE AND fl.label IS NOT NULL,
                           'label': fl.label, 'value': fl.value, 'sources': fl.sources})) AS s
    FROM st LEFT JOIN fl USING (rollout_id, step_index)
    WHERE st.rollout_id IN (SELECT rollout_id FROM fl_run)
    GROUP BY st.rollout_id
), cut AS (
    SELECT rollout_id,
           list_slice(s, 1, coalesce(list_position(list_transform(s, lambda x: x.ok), false) - 1, len(s))) AS s
    FROM gathered
)
SELECT r.problem_id,
       c.rollout_id,
       p.question AS prompt,
       list_transform(c.s, lambda x: x.text) AS completions,
       list_transform(c.s, lambda x: x.label) AS labels,
       list_transform(c.s, lambda x: coalesce(x.value, CASE WHEN x.label THEN 1.0 ELSE 0.0 END)) AS "values",
       list_transform(c.s, lambda x: coalesce(x.sources, []::VARCHAR[])) AS label_sources,
       r.is_correct,
       r.policy_model
FROM cut c
JOIN r USING (rollout_id)
JOIN p ON p.problem_id = r.problem_id
WHERE len(c.s) > 0
ORDER BY r.problem_id, c.rollout_id;
