-- The tool verifier's results on the steps of the `verifier_sft` export (prm_data/exports/verifier_sft.py),
-- flat and unsorted: per exported step it labelled, the stepwise row (`row`, from the caller's
-- `stepwise_export`: `row`, `rollout_id`, `num_steps`), `step_index`, the label's `run_id`, `verdict`
-- (verified = true, contradicted = false, not_checkable or anything else = NULL) and `checked`, its
-- checks as sentences (each check with a definite result; '' when none), e.g.
-- "Checking 19 + 7 = 26: it evaluates to 26 and the step claims 26, which holds."
-- Where several runs labelled the same step, every label comes back and the caller keeps the one of
-- the greatest run_id; the caller also lines the results up with the exported steps (a GROUP BY per
-- step or per row here cost most of the export's time at 10M step labels).
WITH
sw AS (
    SELECT "row", rollout_id, num_steps FROM stepwise_export
), tool AS (
    SELECT sw."row", t.step_index, t.run_id,
           from_json(t.evidence, '{"verdict": "VARCHAR", "checks": [{"check": "VARCHAR", "claim": "VARCHAR",
               "computed": "VARCHAR", "claimed": "VARCHAR", "used": "VARCHAR", "expected": "VARCHAR",
               "source": "VARCHAR", "ok": "BOOLEAN"}]}') AS e
    FROM step_labels t
    JOIN sw ON sw.rollout_id = t.rollout_id
    WHERE t.labeler = 'tool_verify' AND t.step_index >= 0 AND t.step_index < sw.num_steps
)
SELECT "row", step_index, run_id,
       CASE e.verdict WHEN 'verified' THEN true WHEN 'contradicted' THEN false END AS verdict,
       array_to_string(list_transform(list_filter(coalesce(e.checks, []), lambda c: c.ok IS NOT NULL), lambda c:
           CASE WHEN c.check IN ('carried_value', 'question_value')
                    THEN 'It uses ' || c.used || ' in ' || c.claim || ', but ' || coalesce(c.source, 'the context')
                         || ' gives ' || c.expected || '.'
                WHEN c.computed IS NOT NULL
                    THEN 'Checking ' || c.claim || ': it evaluates to ' || c.computed || ' and the step claims '
                         || c.claimed || (CASE WHEN c.ok THEN ', which holds.' ELSE ', which is wrong.' END)
                ELSE 'Checking ' || c.claim || (CASE WHEN c.ok THEN ': it holds.' ELSE ': it is wrong.' END)
           END), ' ') AS checked
FROM tool;
