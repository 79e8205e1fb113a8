-- Dataset card: the prompt versions (prompts/<task>.v<N>.jinja) of the judgments and rubrics
-- behind the exported rollouts.
WITH fl AS (
    SELECT rollout_id, problem_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
)
SELECT 'judgments' AS used_by, prompt_version, count(*) AS n
FROM judgments WHERE rollout_id IN (SELECT rollout_id FROM fl)
GROUP BY prompt_version
UNION ALL
SELECT 'rubrics' AS used_by, prompt_version, count(*) AS n
FROM rubrics WHERE problem_id IN (SELECT problem_id FROM fl)
GROUP BY prompt_version
ORDER BY used_by, prompt_version;
