-- Dataset card: the labelers that labelled the exported rollouts (step_labels). What they cost is not
-- summed here: labelers that reuse the prefix-tree samples would show 0 and the judge probes none; the
-- card takes the runs' cost tables instead (one row per purpose paid for, prm_data/pipeline/summary.py).
WITH fl AS (
    SELECT rollout_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
)
SELECT labeler, labeler_version,
       count(*) AS steps,
       count(DISTINCT rollout_id) AS rollouts
FROM step_labels
WHERE rollout_id IN (SELECT rollout_id FROM fl)
GROUP BY labeler, labeler_version
ORDER BY labeler, labeler_version;
