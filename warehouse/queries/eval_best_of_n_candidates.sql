-- Best-of-N candidates: every rollout of the given problems with its steps, answer and correctness.
WITH r AS (
    SELECT * FROM rollouts QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY run_id DESC) = 1
), st AS (
    SELECT * FROM steps
    QUALIFY row_number() OVER (PARTITION BY rollout_id, step_index ORDER BY run_id DESC) = 1
), p AS (
    SELECT * FROM problems QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY run_id DESC) = 1
)
SELECT r.problem_id, r.rollout_id, any_value(p.question) AS question,
       list(st.text ORDER BY st.step_index) AS steps,
       any_value(r.final_answer) AS final_answer,
       any_value(r.is_correct) AS is_correct
FROM r
JOIN st USING (rollout_id)
JOIN p ON p.problem_id = r.problem_id
WHERE r.problem_id IN (SELECT unnest($problem_ids::VARCHAR[]))
GROUP BY r.problem_id, r.rollout_id
ORDER BY r.problem_id, r.rollout_id;
