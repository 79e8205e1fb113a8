-- ProcessBench-style evaluation set (Zheng et al., 2024), part 1 of 2 (prm_data/exports/processbench.py):
-- the rollouts with final labels under $policy (in $run_id, or any run), each with its latest rollout
-- row and its problem's latest row, in the export's order. `export_processbench_steps.sql` then gives
-- every step of these rollouts with its final label, and the Python side assembles each rollout's
-- `steps` and `label` (the index of the earliest wrong step, -1 when every step is good) with numpy,
-- so no step is grouped or sorted in SQL.
WITH
-- include: _latest_rows
, fl AS (
    SELECT DISTINCT rollout_id FROM final_labels
    WHERE policy = $policy AND ($run_id IS NULL OR run_id = $run_id)
)
SELECT r.rollout_id,
       r.problem_id,
       r.policy_model AS generator,
       p.question AS problem,
       r.is_correct AS final_answer_correct
FROM r
JOIN p ON p.problem_id = r.problem_id
WHERE r.rollout_id IN (SELECT rollout_id FROM fl)
ORDER BY r.problem_id, r.rollout_id;
