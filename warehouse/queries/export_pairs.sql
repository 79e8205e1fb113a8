-- Step preference pairs for Step-DPO (Lai et al., 2024, "Step-DPO: Step-wise Preference
-- Optimization for Long-chain Reasoning of LLMs"): two children of one prefix-tree node whose
-- Monte Carlo values (mc_successes / mc_samples, Math-Shepherd, Wang et al., 2024) differ by at
-- least $margin. The shared prefix is rebuilt by walking the tree from the root. Each child needs
-- $min_samples rollouts through it; at most $max_pairs_per_node pairs per node, widest margin first.
WITH RECURSIVE
-- include: _latest_rows
, n AS (
    SELECT * FROM tree_nodes  -- a node written by several runs: its fullest snapshot
    QUALIFY row_number() OVER (PARTITION BY node_id ORDER BY mc_samples DESC, visits DESC, run_id DESC) = 1
), paths(node_id, prefix) AS (
    SELECT node_id, []::VARCHAR[] FROM n WHERE parent_id IS NULL
    UNION ALL
    SELECT c.node_id, list_append(pa.prefix, c.step_text)
    FROM n c JOIN paths pa ON c.parent_id = pa.node_id
), children AS (
    SELECT node_id, parent_id, problem_id, step_text, mc_samples,
           mc_successes::DOUBLE / mc_samples AS mc_value
    FROM n
    WHERE parent_id IS NOT NULL AND mc_samples >= $min_samples AND step_text IS NOT NULL
)
SELECT a.problem_id,
       a.parent_id AS node_id,
       p.question,
       pa.prefix,
       a.step_text AS chosen,
       b.step_text AS rejected,
       a.mc_value AS chosen_value,
       b.mc_value AS rejected_value,
       a.mc_value - b.mc_value AS margin,
       a.node_id AS chosen_node_id,
       b.node_id AS rejected_node_id
FROM children a
JOIN children b ON a.parent_id = b.parent_id AND a.node_id <> b.node_id
JOIN paths pa ON pa.node_id = a.parent_id
JOIN p ON p.problem_id = a.problem_id
WHERE a.mc_value - b.mc_value >= $margin
QUALIFY row_number() OVER (PARTITION BY a.parent_id ORDER BY a.mc_value - b.mc_value DESC,
                                        a.node_id, b.node_id) <= $max_pairs_per_node
ORDER BY a.problem_id, a.parent_id, margin DESC, a.node_id, b.node_id;
