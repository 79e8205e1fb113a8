-- Convenience views over the base table views (one base view per table in prm_data/schema.py).
-- Loaded by prm_data.warehouse after the base views; statements separated by ';'.

-- First negative step per rollout per labeler (-1 when every labeled step is good).
CREATE OR REPLACE VIEW first_error AS
SELECT rollout_id,
       any_value(problem_id) AS problem_id,
       labeler,
       labeler_version,
       coalesce(min(step_index) FILTER (WHERE hard_label = false), -1) AS first_error_step,
       count(*) AS labeled_steps
FROM step_labels
GROUP BY rollout_id, labeler, labeler_version;

-- Pairwise agreement of hard labels between labelers on the same step.
CREATE OR REPLACE VIEW label_agreement AS
SELECT a.labeler AS labeler_a,
       b.labeler AS labeler_b,
       count(*) AS steps,
       avg(CASE WHEN a.hard_label = b.hard_label THEN 1.0 ELSE 0.0 END) AS agreement
FROM step_labels a
JOIN step_labels b ON a.rollout_id = b.rollout_id AND a.step_index = b.step_index
WHERE a.labeler < b.labeler AND a.hard_label IS NOT NULL AND b.hard_label IS NOT NULL
GROUP BY a.labeler, b.labeler;

-- Per problem: rollouts, pass rate and tokens spent on rollouts and labels.
CREATE OR REPLACE VIEW problem_stats AS
WITH r AS (
    SELECT problem_id,
           count(DISTINCT rollout_id) AS rollouts,
           avg(CASE WHEN is_correct THEN 1.0 ELSE 0.0 END) AS pass_rate,
           sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) AS rollout_tokens
    FROM rollouts GROUP BY problem_id
), l AS (
    SELECT problem_id,
           sum(prompt_tokens + completion_tokens) AS label_tokens,
           sum(calls) AS label_calls
    FROM step_labels GROUP BY problem_id
), p AS (
    SELECT problem_id, any_value(source) AS source, any_value(difficulty) AS difficulty
    FROM problems GROUP BY problem_id
)
SELECT p.problem_id, p.source, p.difficulty,
       coalesce(r.rollouts, 0) AS rollouts,
       r.pass_rate,
       coalesce(r.rollout_tokens, 0) AS rollout_tokens,
       coalesce(l.label_tokens, 0) AS label_tokens,
       coalesce(l.label_calls, 0) AS label_calls
FROM p LEFT JOIN r USING (problem_id) LEFT JOIN l USING (problem_id);
