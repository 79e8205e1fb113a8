-- Fragment, not a query: included by `-- include: _latest_rows` (prm_data.export.load_query).
-- One row per key of problems (p), rollouts (r) and steps (st): where several runs wrote the same
-- row, the greatest run_id wins.
p AS (
    SELECT * FROM problems QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY run_id DESC) = 1
), r AS (
    SELECT * FROM rollouts QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY run_id DESC) = 1
), st AS (
    SELECT * FROM steps
    QUALIFY row_number() OVER (PARTITION BY rollout_id, step_index ORDER BY run_id DESC) = 1
)
