-- Candidate critiques for the `verifier_sft` export (prm_data/exports/verifier_sft.py), one per
-- (exported rollout, critic): every voting judgment of the rollout (per_step mode: its step verdicts;
-- first_error mode: correct before the first error, incorrect from it on), and the tool verifier
-- (verified = correct, contradicted = incorrect, not_checkable = no verdict).
-- `stepwise_export` is a relation the caller registers: the stepwise export's rows (their labelled
-- steps). Per step, `notes` is the critique text before the verdict: the judge's own words on that
-- step (the text after "step_i: correct|incorrect" in its reply, when it wrote any), then what the
-- tool verifier checked (each check with a definite result), so every critique carries the evidence.
-- Where several runs wrote a tool label or a judgment for the same key, the greatest run_id wins.
WITH
sw AS (
    SELECT problem_id, rollout_id, prompt, completions, labels FROM stepwise_export
), tool AS (
    SELECT rollout_id, step_index,
           json_extract_string(evidence, '$.verdict') AS verdict,
           from_json(json_extract(evidence, '$.checks'),
                     '[{"check": "VARCHAR", "expression": "VARCHAR", "computed": "VARCHAR", "claimed": "VARCHAR",
                        "used": "VARCHAR", "expected": "VARCHAR", "source": "VARCHAR", "ok": "BOOLEAN"}]') AS checks
    FROM step_labels
    WHERE labeler = 'tool_verify' AND rollout_id IN (SELECT rollout_id FROM sw)
    QUALIFY row_number() OVER (PARTITION BY rollout_id, step_index ORDER BY run_id DESC) = 1
), tool_text AS (
    SELECT rollout_id, step_index,
           CASE verdict WHEN 'verified' THEN true WHEN 'contradicted' THEN false END AS verdict,
           array_to_string(list_transform(list_filter(coalesce(checks, []), lambda c: c.ok IS NOT NULL), lambda c:
               CASE WHEN c.check IN ('carried_value', 'question_value')
                        THEN 'It uses ' || c.used || ' in ' || c.expression || ', but ' || coalesce(c.source, 'the context')
                             || ' gives ' || c.expected || '.'
                    WHEN c.computed IS NOT NULL
                        THEN 'Checking ' || c.expression || ': it evaluates to ' || c.computed || ' and the step claims '
                             || c.claimed || (CASE WHEN c.ok THEN ', which holds.' ELSE ', which is wrong.' END)
                    ELSE 'Checking ' || c.expression || (CASE WHEN c.ok THEN ': it holds.' ELSE ': it is wrong.' END)
               END), ' ') AS checked
    FROM tool
), tool_rows AS (
    SELECT t.rollout_id,
           list(t.verdict ORDER BY t.step_index) AS tool_verdicts,
           list(t.checked ORDER BY t.step_index) AS tool_notes,
           list(t.step_index ORDER BY t.step_index) AS tool_steps
    FROM tool_text t GROUP BY t.rollout_id
), judged AS (
    SELECT rollout_id, judgment_id, judge, prompt_version, mode, raw_text,
           CASE WHEN mode = 'per_step' THEN step_verdicts END AS step_verdicts, first_error_step
    FROM judgments
    WHERE status = 'vote' AND mode IN ('per_step', 'first_error') AND rollout_id IN (SELECT rollout_id FROM sw)
    QUALIFY row_number() OVER (PARTITION BY judgment_id ORDER BY run_id DESC) = 1
), critics AS (
    SELECT sw.*, 'judge:' || j.judge AS critic, j.judgment_id, j.prompt_version, j.raw_text,
           CASE WHEN j.mode = 'per_step' THEN j.step_verdicts
                ELSE list_transform(range(len(sw.completions)),
                                    lambda i: j.first_error_step < 0 OR i < j.first_error_step) END AS verdicts
    FROM sw JOIN judged j USING (rollout_id)
    UNION ALL
    SELECT sw.*, 'tool_verify' AS critic, NULL AS judgment_id, NULL AS prompt_version, NULL AS raw_text,
           NULL AS verdicts
    FROM sw SEMI JOIN tool_rows t USING (rollout_id)
)
SELECT c.problem_id, c.rollout_id, c.prompt, c.completions, c.labels, c.critic, c.judgment_id, c.prompt_version,
       -- verdicts over the exported steps only; a step the critic gave no verdict is NULL
       list_transform(range(len(c.completions)), lambda i:
           CASE WHEN c.critic = 'tool_verify'
                THEN (CASE WHEN list_position(t.tool_steps, i) IS NULL THEN NULL
                           ELSE t.tool_verdicts[list_position(t.tool_steps, i)] END)
                ELSE c.verdicts[i + 1] END) AS verdicts,
       CASE WHEN c.critic <> 'tool_verify' THEN len(c.verdicts) END AS judged_steps,
       list_transform(range(len(c.completions)), lambda i: trim(concat_ws(' ',
           CASE WHEN c.raw_text IS NOT NULL THEN nullif(trim(regexp_extract(c.raw_text,
               '(?im)^[ \t]*step_' || i || '[ \t]*:[ \t]*(?:correct|incorrect)\b[ \t.:;,-]*([^\n]*)', 1)), '') END,
           CASE WHEN list_position(t.tool_steps, i) IS NOT NULL
                THEN nullif(t.tool_notes[list_position(t.tool_steps, i)], '') END))) AS notes
FROM critics c
LEFT JOIN tool_rows t USING (rollout_id)
ORDER BY c.problem_id, c.rollout_id, c.critic, c.judgment_id;
