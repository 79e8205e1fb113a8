"""docs/architecture.md matches the code it describes.

Specifications:
- the plan's stages, in the diagram and in the plan's line drawing, are `PLAN`'s, in order;
- the registry-entry table lists exactly the fields of `LabelerSpec`;
- every file of the repository the page names exists (but the example of a new labeler).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prm_data.labelers.registry import LabelerSpec
from prm_data.pipeline.plan import PLAN

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "architecture.md").read_text()


def test_the_diagram_and_the_line_drawing_list_the_plan_stages_in_order():
    stages = [s.name for s in PLAN]
    diagram = re.search(r'plan\["PLAN \(pipeline/plan.py\)<br/>(.*?)"\]', DOC, re.S).group(1)
    assert [s.strip() for s in diagram.replace("<br/>", "").split("·")] == stages
    drawing = re.search(r"```\n(select .*?)\n", DOC).group(1)
    assert [s.strip() for s in drawing.split("─>")] == stages


def test_the_registry_table_lists_the_fields_of_a_labeler_spec():
    section = DOC[DOC.index("Each entry of `LABELERS`"):DOC.index("Aggregation policies")]
    rows = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert rows == [f.name for f in dataclasses.fields(LabelerSpec)]


def test_every_file_the_page_names_exists():
    named = set(re.findall(r"\b((?:prm_data|flows|benchmarks|tests|configs|docs)/[\w/.-]+\.(?:py|yaml|md))", DOC))
    assert len(named) > 10
    example = "prm_data/labelers/my_labeler.py"  # the "adding a labeler" example
    assert example in named
    assert sorted(p for p in named - {example} if not (REPO / p).exists()) == []
