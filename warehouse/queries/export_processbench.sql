-- ProcessBench-style evaluation set (Zheng et al., 2024): one row per rollout with every step and
-- `label` = index of the earliest wrong step, -1 when every step is good.
-- The label comes from the final labels under $policy: the first step labelled bad, provided
-- every step before it has a kept, non-null label; a rollout whose steps are all kept and good
-- gets -1; any other rollout (an unknown step before any known error) is left out.
WITH
-- include: _latest_rows
, fl AS (
    SELECT * FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
    QUALIFY row_number() OVER (PARTITION BY rollout_id, step_index ORDER BY run_id DESC) = 1
), per_rollout AS (
    SELECT st.rollout_id,
           list(st.text ORDER BY st.step_index) AS steps,
           min(st.step_index) FILTER (WHERE fl.kept IS NOT TRUE OR fl.label IS NULL) AS first_gap,
           min(st.step_index) FILTER (WHERE fl.kept AND fl.label = false) AS first_bad
    FROM st LEFT JOIN fl USING (rollout_id, step_index)
    WHERE st.rollout_id IN (SELECT rollout_id FROM fl)
    GROUP BY st.rollout_id
), labeled AS (
    SELECT pr.*,
           CASE WHEN pr.first_bad IS NOT NULL AND (pr.first_gap IS NULL OR pr.first_bad < pr.first_gap)
                    THEN pr.first_bad
                WHEN pr.first_gap IS NULL THEN -1
           END AS label
    FROM per_rollout pr
)
SELECT l.rollout_id AS id,
       r.problem_id,
       l.rollout_id,
       r.policy_model AS generator,
       p.question AS problem,
       l.steps,
       CAST(l.label AS INTEGER) AS label,
       r.is_correct AS final_answer_correct
FROM labeled l
JOIN r USING (rollout_id)
JOIN p ON p.problem_id = r.problem_id
WHERE l.label IS NOT NULL
ORDER BY r.problem_id, l.rollout_id;
