-- Best-of-N candidates: every rollout of the given problems with its steps, answer and correctness.
WITH
-- include: _latest_rows
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
