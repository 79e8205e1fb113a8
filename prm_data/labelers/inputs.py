"""The labelers' input record: one rollout split into steps (`RolloutSteps`, prm_data/rollouts.py).

`Solution` and `solutions_from_rows` are the names the tool verifier, the judges
and the rubric grader use for `RolloutSteps` and `rollouts_from_rows`: one
record, two names, so that code reads as before. What a labeler is given and
gives back around it is in prm_data/labelers/protocol.py.
"""

from __future__ import annotations

from prm_data.rollouts import RolloutSteps, rollouts_from_rows

Solution = RolloutSteps
SolutionLike = RolloutSteps
solutions_from_rows = rollouts_from_rows
