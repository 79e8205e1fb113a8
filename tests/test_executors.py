"""One plan, several executors: `configs/sim.yaml` run serially, under Prefect with threads, on a
local Dask cluster and on a local Ray instance (when prefect-ray is installed) writes the same rows
in every table.

Specifications:
- every table the run writes holds the same rows whichever executor ran the
  plan: ids, texts, labels, values, costs (only wall-clock columns, random
  failure ids and the config's own paths may differ);
- `runs.timings` has the same keys (one per stage of the plan) every way;
- the Dask and Ray runs account for every model call their worker processes
  made (the flow process itself ran no stage), so their `runs` rows count what
  the serial run counts.

Only the warehouse, reports and export folders differ from configs/sim.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import flows  # noqa: F401  (Prefect settings before prefect is imported)
from flows import tasks
from flows.nightly import nightly
from prm_data.config import RunConfig
from prm_data.pipeline.plan import stages_for
from prm_data.pipeline.serial import run_serial
from prm_data.schema import TABLES
from prm_data.warehouses import open_warehouse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).resolve().parents[1]
# columns that say when or where, not what: wall-clock times, random row ids, the run's own folders
VOLATILE = {"created_at", "started_at", "finished_at", "failure_id", "latency_s", "config_json", "summary",
            "timings"}


def sim_yaml(root: Path, **update) -> RunConfig:
    data = RunConfig.from_yaml(REPO / "configs" / "sim.yaml").model_dump(mode="json")
    data.update(warehouse=str(root / "warehouse"), reports_dir=str(root / "reports"), **update)
    data["export"]["out_dir"] = str(root / "export")
    return RunConfig.model_validate(data)


def table_contents(config: RunConfig) -> dict[str, list[dict]]:
    """Every table's rows, sorted, without the volatile columns."""
    wh = open_warehouse(config.warehouse)
    out = {}
    for table, schema in TABLES.items():
        cols = [f.name for f in schema if f.name not in VOLATILE and not pa.types.is_timestamp(f.type)]
        order = ", ".join(f'"{c}"' for c in cols if not pa.types.is_list(schema.field(c).type))
        out[table] = wh.query(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").to_pylist()
    return out


def timings_keys(config: RunConfig) -> list[set[str]]:
    rows = open_warehouse(config.warehouse).rows("SELECT timings FROM runs WHERE status = 'completed'")
    return [set(json.loads(r["timings"])) for r in rows]


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    config = sim_yaml(tmp_path_factory.mktemp("serial"))
    return config, run_serial(config)


def _ray_installed() -> bool:
    try:
        import prefect_ray  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("runner", ["thread", "dask", pytest.param("ray", marks=pytest.mark.skipif(
    not _ray_installed(), reason="needs `pip install prefect-ray ray` (optional, see docs/scaling.md)"))])
def test_prefect_writes_the_same_rows_as_the_serial_runner(serial_run, tmp_path, runner):
    serial_config, serial_summary = serial_run
    config = sim_yaml(tmp_path, task_runner=runner, max_workers=2)
    tasks.forget_contexts()  # as in a fresh process
    summary = nightly(config)

    ours, theirs = table_contents(config), table_contents(serial_config)
    assert len(theirs["step_labels"]) > 1000 and len(theirs["final_labels"]) > 500
    for table in TABLES:
        assert ours[table] == theirs[table], table
    stage_names = {s.name for s in stages_for(config)}
    assert timings_keys(config) == timings_keys(serial_config) == [stage_names]
    assert set(summary["timings"]) == set(serial_summary["timings"]) == stage_names
    assert summary["tokens"] == serial_summary["tokens"] and summary["tokens"]["calls"] > 0
    if runner in ("dask", "ray"):  # every stage ran in the cluster's worker processes, none in this one
        assert not [key for key in tasks._CONTEXTS if key[0] == config.warehouse]
