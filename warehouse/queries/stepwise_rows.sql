-- The `stepwise_rows` of final labels about to be written (prm_data/stepwise_rows.py): one row per
-- rollout and policy in `new_final_labels` (a relation the writer registers), built from the steps and
-- the rollout row of the same run ($run_id) and the problem's question. `steps`, `rollouts` and
-- `problems` are relations the writer registers too: the rows of the shards that hold these rollouts
-- and problems, not the views over every run.
-- `completions` is the longest run of steps, from step 0, whose final label is kept and not null; the
-- first step without one ends it (steps after it are unknown, not good), so it may be empty.
-- `values` are the soft labels (the aggregated value, or 1.0/0.0 from the hard label when the
-- aggregation gave none), `label_sources` the labelers that decided each step, `tests_passed` the
-- rollout's per-test outcomes (code problems; null otherwise).
-- Each rollout's steps are gathered once, as a list of structs sorted by step index, and cut at the
-- first gap: no window over steps and no ordered aggregates (2x faster at 10M step labels).
WITH
fl AS (
    SELECT * FROM new_final_labels
), decided AS (
    SELECT DISTINCT rollout_id, policy, problem_id FROM fl
), st AS (
    SELECT rollout_id, step_index, text FROM steps
    WHERE run_id = $run_id AND rollout_id IN (SELECT rollout_id FROM decided)
), r AS (
    SELECT rollout_id, is_correct, policy_model, tests_passed FROM rollouts
    WHERE run_id = $run_id AND rollout_id IN (SELECT rollout_id FROM decided)
), p AS (
    SELECT problem_id, question FROM problems
    WHERE problem_id IN (SELECT problem_id FROM decided)
    QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY run_id DESC) = 1
), gathered AS (
    SELECT d.rollout_id, d.policy, d.problem_id,
           coalesce(list_sort(list({'i': st.step_index, 'text': st.text,
                                    'ok': fl.kept IS TRUE AND fl.label IS NOT NULL,
                                    'label': fl.label, 'value': fl.value, 'sources': fl.sources})
                              FILTER (WHERE st.step_index IS NOT NULL)), []) AS s
    FROM decided d
    LEFT JOIN st USING (rollout_id)
    LEFT JOIN fl ON fl.rollout_id = d.rollout_id AND fl.policy = d.policy AND fl.step_index = st.step_index
    GROUP BY d.rollout_id, d.policy, d.problem_id
), cut AS (
    SELECT rollout_id, policy, problem_id,
           list_slice(s, 1, coalesce(list_position(list_transform(s, lambda x: x.ok), false) - 1, len(s))) AS s
    FROM gathered
)
SELECT $run_id AS run_id,
       c.policy,
       c.problem_id,
       c.rollout_id,
       p.question AS prompt,
       list_transform(c.s, lambda x: x.text) AS completions,
       list_transform(c.s, lambda x: x.label) AS labels,
       list_transform(c.s, lambda x: coalesce(x.value, CASE WHEN x.label THEN 1.0 ELSE 0.0 END)) AS "values",
       list_transform(c.s, lambda x: coalesce(x.sources, []::VARCHAR[])) AS label_sources,
       r.is_correct,
       r.policy_model,
       r.tests_passed
FROM cut c
LEFT JOIN r USING (rollout_id)
LEFT JOIN p USING (problem_id)
ORDER BY c.policy, c.problem_id, c.rollout_id;
