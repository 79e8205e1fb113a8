-- Dataset card: the runs behind an export (final labels under $policy, and the rollouts and step
-- labels they were built from), with each run's stored config and git sha where `runs` has a row.
WITH fl AS (
    SELECT run_id, rollout_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
), ids AS (
    SELECT run_id FROM fl
    UNION SELECT run_id FROM rollouts WHERE rollout_id IN (SELECT rollout_id FROM fl)
    UNION SELECT run_id FROM step_labels WHERE rollout_id IN (SELECT rollout_id FROM fl)
), r AS (
    SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY finished_at DESC NULLS LAST) = 1
)
SELECT ids.run_id, r.flow, r.status, r.config_version, r.git_sha, r.config_json, r.summary,
       CAST(r.started_at AS VARCHAR) AS started_at, CAST(r.finished_at AS VARCHAR) AS finished_at
FROM ids LEFT JOIN r USING (run_id)
ORDER BY ids.run_id;
