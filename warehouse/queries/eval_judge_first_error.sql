-- ProcessBench predictions of a judge, one per judgment sample: first_error mode gives the index
-- directly; per_step mode gives the first step judged incorrect (-1 when all are correct).
-- Abstentions are left out; the caller takes the majority over a rollout's samples.
SELECT rollout_id, sample_index,
       CASE WHEN mode = 'first_error' THEN first_error_step
            ELSE coalesce(list_position(step_verdicts, false) - 1, -1)
       END AS first_error_step
FROM judgments
WHERE judge = $judge AND status = 'vote' AND mode IN ('first_error', 'per_step')
ORDER BY rollout_id, sample_index;
