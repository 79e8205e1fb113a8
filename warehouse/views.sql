-- Convenience views over the base table views (one base view per table in prm_data/schema.py).
-- Loaded by prm_data.warehouse after the base views; statements separated by ';'.

-- First negative step per rollout per labeler (-1 when every labeled step is good); labeled_steps counts
-- the steps it labeled good or bad, not those it abstained on.
CREATE OR REPLACE VIEW first_error AS
SELECT rollout_id,
       any_value(problem_id) AS problem_id,
       labeler,
       labeler_version,
       coalesce(min(step_index) FILTER (WHERE hard_label = false), -1) AS first_error_step,
       count(hard_label) AS labeled_steps
FROM step_labels
GROUP BY rollout_id, labeler, labeler_version;

-- Pairwise agreement of hard labels between labelers on the same step (of the same run).
-- Each step's labels become two bitmasks (which labelers spoke, which said "good"); steps are then
-- counted per mask pattern, and the pairs read off the few patterns. One grouping pass instead of a
-- self-join of step_labels: 10M labels in about half the time (benchmarks/warehouse_scale.py).
CREATE OR REPLACE VIEW label_agreement AS
WITH names AS (
    SELECT labeler, (row_number() OVER (ORDER BY labeler) - 1)::INTEGER AS bit
    FROM (SELECT DISTINCT labeler FROM step_labels WHERE hard_label IS NOT NULL)
), per_step AS (
    SELECT bit_or(1::BIGINT << n.bit) AS present,
           bit_or(CASE WHEN s.hard_label THEN 1::BIGINT << n.bit ELSE 0::BIGINT END) AS good
    FROM step_labels s JOIN names n USING (labeler)
    WHERE s.hard_label IS NOT NULL
    GROUP BY s.run_id, s.rollout_id, s.step_index
), patterns AS (
    SELECT present, good, count(*) AS steps FROM per_step GROUP BY ALL
)
SELECT a.labeler AS labeler_a,
       b.labeler AS labeler_b,
       sum(p.steps)::BIGINT AS steps,
       sum(CASE WHEN ((p.good >> a.bit) & 1) = ((p.good >> b.bit) & 1) THEN p.steps ELSE 0 END) / sum(p.steps)
           AS agreement
FROM patterns p
JOIN names a ON ((p.present >> a.bit) & 1) = 1
JOIN names b ON ((p.present >> b.bit) & 1) = 1 AND a.labeler < b.labeler
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
