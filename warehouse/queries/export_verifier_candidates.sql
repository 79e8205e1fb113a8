-- Candidate critiques for the `verifier_sft` export (prm_data/exports/verifier_sft.py), one per
-- (exported rollout, critic): every voting judgment of the rollout (per_step mode: its step verdicts;
-- first_error mode: correct before the first error, incorrect from it on), and the tool verifier
-- (verified = correct, contradicted = incorrect, not_checkable = no verdict).
-- `stepwise_export` is a relation the caller registers: per row of the stepwise export, its position
-- (`row`), `rollout_id` and `num_steps` (its labelled steps); the texts stay with the caller.
-- `per_step` lists, per exported step, `verdict` (NULL: the critic gave none) and `note`, the critique
-- text before the verdict: the judge's own words on that step (the text after
-- "step_i: correct|incorrect" in its reply, when it wrote any), then what the tool verifier checked (each check with a definite result), so every critique carries the evidence.
-- Where several runs wrote a tool label or a judgment for the same key, the greatest run_id wins.
-- Each rollout's tool results are gathered once, aligned to its exported steps (a sorted list of
-- structs, as in stepwise_rows.sql), and rows are not sorted here: the caller sorts the kept ones.
WITH
sw AS (
    SELECT "row", rollout_id, num_steps FROM stepwise_export
), tool AS (
    SELECT rollout_id, step_index, arg_max(evidence, run_id) AS evidence
    FROM step_labels
    WHERE labeler = 'tool_verify' AND rollout_id IN (SELECT rollout_id FROM sw)
    GROUP BY rollout_id, step_index
), tool_parsed AS (
    SELECT rollout_id, step_index,
           json_extract_string(evidence, '$.verdict') AS verdict,
           from_json(json_extract(evidence, '$.checks'),
                     '[{"check": "VARCHAR", "claim": "VARCHAR", "computed": "VARCHAR", "claimed": "VARCHAR",
                        "used": "VARCHAR", "expected": "VARCHAR", "source": "VARCHAR", "ok": "BOOLEAN"}]') AS checks
    FROM tool
), tool_text AS (
    SELECT rollout_id, step_index,
           CASE verdict WHEN 'verified' THEN true WHEN 'contradicted' THEN false END AS verdict,
           array_to_string(list_transform(list_filter(coalesce(checks, []), lambda c: c.ok IS NOT NULL), lambda c:
               CASE WHEN c.check IN ('carried_value', 'question_value')
                        THEN 'It uses ' || c.used || ' in ' || c.claim || ', but ' || coalesce(c.source, 'the context')
                             || ' gives ' || c.expected || '.'
                    WHEN c.computed IS NOT NULL
                        THEN 'Checking ' || c.claim || ': it evaluates to ' || c.computed || ' and the step claims '
                             || c.claimed || (CASE WHEN c.ok THEN ', which holds.' ELSE ', which is wrong.' END)
                    ELSE 'Checking ' || c.claim || (CASE WHEN c.ok THEN ': it holds.' ELSE ': it is wrong.' END)
               END), ' ') AS checked
    FROM tool_parsed
), exported_steps AS (
    SELECT "row", rollout_id, unnest(range(num_steps)) AS i FROM sw
), tool_rows AS (
    SELECT s."row",
           list_sort(list({'i': s.i, 'verdict': t.verdict, 'note': coalesce(t.checked, '')})) AS per_step,
           count(t.step_index) AS checked_steps
    FROM exported_steps s
    LEFT JOIN tool_text t ON t.rollout_id = s.rollout_id AND t.step_index = s.i
    GROUP BY s."row"
), judged AS (
    SELECT rollout_id, judgment_id, judge, mode, raw_text,
           CASE WHEN mode = 'per_step' THEN step_verdicts END AS step_verdicts, first_error_step
    FROM judgments
    WHERE status = 'vote' AND mode IN ('per_step', 'first_error') AND rollout_id IN (SELECT rollout_id FROM sw)
    QUALIFY row_number() OVER (PARTITION BY judgment_id ORDER BY run_id DESC) = 1
), judge_rows AS (
    SELECT sw."row", 'judge:' || j.judge AS critic, j.judgment_id,
           list_transform(range(sw.num_steps), lambda i: {
               'i': i,
               'verdict': CASE WHEN j.mode = 'per_step' THEN j.step_verdicts[i + 1]
                               ELSE j.first_error_step < 0 OR i < j.first_error_step END,
               'note': trim(concat_ws(' ',
                   nullif(trim(regexp_extract(j.raw_text,
                       '(?im)^[ \t]*step_' || i || '[ \t]*:[ \t]*(?:correct|incorrect)\b[ \t.:;,-]*([^\n]*)', 1)), ''),
                   nullif(t.per_step[i + 1].note, '')))}) AS per_step
    FROM sw JOIN judged j USING (rollout_id)
    LEFT JOIN tool_rows t USING ("row")
)
SELECT "row", critic, judgment_id, per_step FROM judge_rows
UNION ALL
SELECT "row", 'tool_verify' AS critic, NULL AS judgment_id, per_step FROM tool_rows WHERE checked_steps > 0;
