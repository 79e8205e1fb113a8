-- Dataset card: the labelers that labelled the exported rollouts (step_labels), with their cost.
WITH fl AS (
    SELECT rollout_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
)
SELECT labeler, labeler_version,
       count(*) AS steps,
       count(DISTINCT rollout_id) AS rollouts,
       CAST(sum(calls) AS BIGINT) AS calls,
       CAST(sum(prompt_tokens + completion_tokens) AS BIGINT) AS tokens
FROM step_labels
WHERE rollout_id IN (SELECT rollout_id FROM fl)
GROUP BY labeler, labeler_version
ORDER BY labeler, labeler_version;
