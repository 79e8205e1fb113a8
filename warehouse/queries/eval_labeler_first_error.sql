-- ProcessBench predictions of a labeler: its first bad step per rollout (-1 = none), from the
-- `first_error` view. $version NULL = every version (the caller refuses a rollout with several).
SELECT rollout_id, labeler_version, first_error_step
FROM first_error
WHERE labeler = $labeler AND ($version IS NULL OR labeler_version = $version)
ORDER BY rollout_id, labeler_version;
