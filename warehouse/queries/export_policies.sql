-- The aggregation policies that have final labels (in run $run_id, or in any run), newest first:
-- a policy's age is that of the newest run that wrote it (runs.started_at; a run with no `runs` row
-- sorts last), ties by name. `prm-data export` exports the first one when no --policy is given and
-- lists them all when the one asked for is absent.
WITH written AS (
    SELECT run_id, policy, count(*) FILTER (WHERE kept) AS kept_steps
    FROM final_labels WHERE $run_id IS NULL OR run_id = $run_id GROUP BY ALL
), started AS (
    SELECT run_id, max(started_at) AS started_at FROM runs GROUP BY run_id
)
SELECT policy, sum(kept_steps)::BIGINT AS kept_steps, count(DISTINCT run_id) AS runs,
       max(started.started_at) AS newest_run_started
FROM written LEFT JOIN started USING (run_id)
GROUP BY policy
ORDER BY newest_run_started DESC NULLS LAST, max(run_id) DESC, policy;
