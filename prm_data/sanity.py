"""A reference-free sanity check of a run: each labeler against exact arithmetic.

No gold step labels exist for a real run, but tool verification
(prm_data/labelers/tool_verify.py) checks some steps exactly. Its verdict is
local (a step that computes correctly from an earlier wrong result is
`verified`), so it is compared with the other labelers only on the steps it
*fully checks*: every earlier step of the rollout was `verified` and this step
is `verified` or `contradicted`. There, a correct verified step is a good
prefix and a contradicted one a bad one, whatever completes it.

Per labeler: the steps both label (hard labels only), the share on which they
agree, and that share on the verified and on the contradicted steps apart.
A Monte Carlo labeler that disagrees with exact arithmetic on most of them is
the signature of a completer too weak for the problems (issue 16: a 135M
completer solving ~10 % of problems marks restating steps wrong), and gets a
warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prm_data.warehouse import Warehouse

TOOL_LABELER = "tool_verify"

_AGREEMENT_SQL = """
WITH tool AS (
    SELECT rollout_id, step_index, hard_label,
           json_extract_string(evidence, '$.verdict') AS verdict
    FROM step_labels WHERE run_id = $run AND labeler = $tool
), ordered AS (
    SELECT *,
           count(*) OVER w AS earlier_steps,
           coalesce(sum(CASE WHEN verdict = 'verified' THEN 0 ELSE 1 END) OVER w, 0) AS earlier_unverified
    FROM tool
    WINDOW w AS (PARTITION BY rollout_id ORDER BY step_index ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), checked AS (
    SELECT rollout_id, step_index, hard_label AS tool_label FROM ordered
    WHERE verdict IN ('verified', 'contradicted') AND earlier_steps = step_index AND earlier_unverified = 0
)
SELECT l.labeler, count(*) AS steps,
       avg(CASE WHEN l.hard_label = c.tool_label THEN 1.0 ELSE 0.0 END) AS agreement,
       avg(CASE WHEN l.hard_label THEN 1.0 ELSE 0.0 END) FILTER (WHERE c.tool_label) AS agreement_on_verified,
       avg(CASE WHEN l.hard_label THEN 0.0 ELSE 1.0 END) FILTER (WHERE NOT c.tool_label) AS agreement_on_contradicted,
       count(*) FILTER (WHERE c.tool_label) AS verified_steps,
       count(*) FILTER (WHERE NOT c.tool_label) AS contradicted_steps
FROM checked c JOIN step_labels l
  ON l.run_id = $run AND l.rollout_id = c.rollout_id AND l.step_index = c.step_index
WHERE l.labeler <> $tool AND l.hard_label IS NOT NULL
GROUP BY l.labeler ORDER BY l.labeler
"""


@dataclass(frozen=True)
class LabelerAgreement:
    labeler: str
    steps: int  # fully checked steps the labeler gave a hard label
    agreement: float
    agreement_on_verified: float | None
    agreement_on_contradicted: float | None
    verified_steps: int
    contradicted_steps: int


@dataclass(frozen=True)
class SanityReport:
    run_id: str
    fully_checked_steps: int
    labelers: tuple[LabelerAgreement, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return asdict(self)


def arithmetic_sanity(warehouse: Warehouse, run_id: str, *, min_steps: int = 20,
                      max_mc_disagreement: float = 0.5,
                      monte_carlo_labelers: tuple[str, ...] | None = None) -> SanityReport:
    """Each labeler's agreement with tool verification on the steps it fully checks, with warnings.

    A Monte Carlo labeler that disagrees on more than `max_mc_disagreement` of at least
    `min_steps` such steps is warned about; so is a run that has no tool labels at all.
    `monte_carlo_labelers` defaults to the registry's labelers of aggregation role `mc`.
    """
    if monte_carlo_labelers is None:
        from prm_data.labelers.registry import with_role

        monte_carlo_labelers = tuple(with_role("mc"))
    params = {"run": run_id, "tool": TOOL_LABELER}
    tool_steps = warehouse.scalar("SELECT count(*) FROM step_labels WHERE run_id = ? AND labeler = ?",
                                  [run_id, TOOL_LABELER])
    if not tool_steps:
        return SanityReport(run_id, 0, (), (f"run {run_id} has no {TOOL_LABELER} labels: the arithmetic sanity "
                                            "check needs the tool_verify labeler",))
    checked = warehouse.scalar(_AGREEMENT_SQL.split("SELECT l.labeler")[0]
                               + "SELECT count(*) FROM checked", params)
    rows = [LabelerAgreement(**r) for r in warehouse.rows(_AGREEMENT_SQL, params)]
    warnings = []
    for r in rows:
        if r.labeler in monte_carlo_labelers and r.steps >= min_steps and 1 - r.agreement > max_mc_disagreement:
            warnings.append(
                f"{r.labeler} disagrees with exact arithmetic on {1 - r.agreement:.0%} of the {r.steps} steps "
                f"tool verification fully checks (it calls {1 - (r.agreement_on_verified or 0):.0%} of the "
                f"verified ones bad): the completer is probably too weak for these problems; use a stronger "
                f"completer or progress labels in advantage mode")
    return SanityReport(run_id, int(checked or 0), tuple(rows), tuple(warnings))
