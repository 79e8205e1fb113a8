-- Candidate critiques for the `verifier_sft` export (prm_data/exports/verifier_sft.py), from the judges:
-- one per (exported rollout, voting judgment) (per_step mode: its step verdicts; first_error mode:
-- correct before the first error, incorrect from it on). The tool verifier's candidates come from
-- export_verifier_tool_steps.sql.
-- `stepwise_export` is a relation the caller registers: per row of the stepwise export, its position
-- (`row`), `rollout_id` and `num_steps` (its labelled steps); the texts stay with the caller.
-- `tool_notes` (also the caller's) holds, per row, what the tool verifier checked of each exported step
-- ('' where it checked nothing).
-- `per_step` lists, per exported step, `verdict` (NULL: the judge gave none) and `note`, the critique
-- text before the verdict: the judge's own words on that step (the text after
-- "step_i: correct|incorrect" in its reply, when it wrote any), then what the tool verifier checked (each
-- check with a definite result), so every critique carries the evidence.
-- Where several runs wrote a judgment, the greatest run_id wins. Rows are not sorted here: the caller
-- sorts the kept ones.
WITH
sw AS (
    SELECT "row", rollout_id, num_steps FROM stepwise_export
), judged AS (
    SELECT rollout_id, judgment_id, judge, mode, raw_text,
           CASE WHEN mode = 'per_step' THEN step_verdicts END AS step_verdicts, first_error_step
    FROM judgments
    WHERE status = 'vote' AND mode IN ('per_step', 'first_error') AND rollout_id IN (SELECT rollout_id FROM sw)
    QUALIFY row_number() OVER (PARTITION BY judgment_id ORDER BY run_id DESC) = 1
)
SELECT sw."row", 'judge:' || j.judge AS critic, j.judgment_id,
       list_transform(range(sw.num_steps), lambda i: {
           'i': i,
           'verdict': CASE WHEN j.mode = 'per_step' THEN j.step_verdicts[i + 1]
                           ELSE j.first_error_step < 0 OR i < j.first_error_step END,
           'note': trim(concat_ws(' ',
               nullif(trim(regexp_extract(j.raw_text,
                   '(?im)^[ \t]*step_' || i || '[ \t]*:[ \t]*(?:correct|incorrect)\b[ \t.:;,-]*([^\n]*)', 1)), ''),
               nullif(t.notes[i + 1], '')))}) AS per_step
FROM sw JOIN judged j USING (rollout_id)
LEFT JOIN tool_notes t USING ("row");
