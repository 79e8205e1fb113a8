"""Shipped configs and deployment files, and the nightly deployment on a real Prefect server.

Specifications:
- every config in configs/ is a valid RunConfig; the vLLM config pools several servers per
  model and votes three judges; the OpenAI config reads its key from the environment;
- deploy/prefect.yaml carries exactly the shipped configs, and every deployment's entrypoint
  is a flow that accepts its parameters;
- the Kubernetes job templates declare every variable they use and render to jobs that mount
  the shared volume (and a GPU for training); the vLLM files give each server one GPU and
  prefix caching, at the addresses the configs list;
- a real `prefect server` on a loopback port takes `prefect deploy`, schedules the nightly
  deployment at 02:00 UTC, and a process worker runs a triggered run to completion.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

import flows  # noqa: F401  (Prefect settings before prefect is imported)
from prm_data.config import RunConfig
from prm_data.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PREFECT = str(Path(sys.executable).with_name("prefect"))


def shipped(name: str) -> RunConfig:
    return RunConfig.from_yaml(REPO / "configs" / f"{name}.yaml")


def deployments() -> dict[str, dict]:
    spec = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def backends(config: RunConfig) -> dict:
    return {"policy": config.policy, "completer": config.completer_backend, "prover": config.prover_backend,
            **{f"judge:{name}": b for name, b in config.judges.items()}}


def without_urls(config: RunConfig) -> dict:
    """The config minus where its servers live."""
    data = config.model_dump(mode="json")
    for role in ("policy", "completer", "prover"):
        if data.get(role):
            data[role].pop("base_urls")
    for judge in data["judges"].values():
        judge.pop("base_urls")
    return data


# ------------------------------------------------------------------ configs


def test_every_shipped_config_is_a_valid_run_config():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"local", "sim", "vllm", "openai"}
    for path in paths:
        RunConfig.from_yaml(path)  # raises ValidationError on any unknown or ill-typed field


def test_the_vllm_config_pools_servers_per_model_and_votes_three_judges():
    config = shipped("vllm")
    for role in ("policy", "completer"):
        backend = backends(config)[role]
        assert backend.kind == "openai" and backend.continuation == "continue_final_message", role
        assert len(backend.base_urls) >= 2, f"{role}: a pool of servers"
    judges = [config.judges[j.name] for j in config.labeling.judge_vote.judges]
    assert len(judges) == 3 and len({j.model for j in judges}) == 3
    assert all(j.kind == "openai" and j.base_urls for j in judges)
    assert {"mc_value", "judge_vote", "rubric"} <= set(config.labeling.labelers)
    assert config.aggregate.policy == "consensus"
    # one server per GPU: no two roles share a URL unless they are the same model
    by_url: dict[str, set[str]] = {}
    for backend in backends(config).values():
        for url in backend.base_urls:
            by_url.setdefault(url, set()).add(backend.model)
    assert all(len(models) == 1 for models in by_url.values())


def test_the_openai_config_reads_its_key_from_the_environment_and_continues_without_vllm_flags():
    config = shipped("openai")
    for role, backend in backends(config).items():
        assert backend.kind == "openai" and backend.api_key_env == "OPENAI_API_KEY", role
        assert backend.base_urls == ("https://api.openai.com/v1",), role
    assert config.completer_backend.continuation in ("instruction", "prefill")
    assert not re.search(r"sk-[A-Za-z0-9]", (REPO / "configs" / "openai.yaml").read_text())


# ------------------------------------------------------------- deploy files


def test_the_deployments_carry_the_shipped_configs():
    deps = deployments()
    nightly = RunConfig.model_validate(deps["nightly"]["parameters"]["config"])
    assert nightly == shipped("local"), "deploy/prefect.yaml: copy configs/local.yaml into definitions.configs.local"
    cluster = RunConfig.model_validate(deps["nightly-cluster"]["parameters"]["config"])
    assert without_urls(cluster) == without_urls(shipped("vllm")), (
        "deploy/prefect.yaml: definitions.configs.cluster must be configs/vllm.yaml with cluster base_urls")
    assert all(".svc.cluster.local:" in url for b in backends(cluster).values() for url in b.base_urls)
    train = RunConfig.model_validate(deps["train-prm"]["parameters"]["config"])
    assert train.train.enabled and train.labeling_version() == cluster.labeling_version()

    for name in ("nightly", "nightly-cluster"):
        [schedule] = deps[name]["schedules"]
        assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", "UTC")
    assert deps["nightly"]["work_pool"]["name"] == "prm-data-process"
    assert deps["nightly-cluster"]["work_pool"]["name"] == "prm-data-k8s"
    assert deps["train-prm"]["work_pool"]["name"] == "prm-data-gpu"


def test_every_deployment_entrypoint_is_a_flow_that_accepts_its_parameters(monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)  # entrypoints are relative to the repository root, as for `prefect deploy`
    for name, dep in deployments().items():
        flow = load_flow_from_entrypoint(dep["entrypoint"])
        validated = flow.validate_parameters(dep["parameters"])  # raises ParameterTypeError on a mismatch
        assert isinstance(validated["config"], RunConfig), name


def render(template: dict, **values) -> dict:
    """The Kubernetes job a worker would submit: the template with the variables' defaults and `values`."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    filled = {k: v["default"] for k, v in props.items() if "default" in v}
    filled.update(command="prefect flow-run execute", env={"PREFECT_API_URL": "http://prefect:4200/api"},
                  labels={"prefect.io/flow-run-id": "1"}, name="nightly-run", **values)
    return apply_values(template["job_configuration"], filled)


@pytest.mark.parametrize("pool, gpus", [("flows-pool.json", None), ("gpu-pool.json", 1)])
def test_the_kubernetes_job_templates_render_to_jobs_on_the_shared_volume(pool, gpus):
    from prefect.server.schemas.actions import validate_base_job_template

    template = json.loads((DEPLOY / "k8s" / pool).read_text())
    validate_base_job_template(template)  # the server's own check: every placeholder is a declared variable
    job = render(template, image="prm-data:test")["job_manifest"]
    assert (job["apiVersion"], job["kind"], job["metadata"]["namespace"]) == ("batch/v1", "Job", "prm-data")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "prm-data:test" and container["args"] == "prefect flow-run execute"
    assert container["workingDir"] == "/opt/prm-data"
    mounts = {m["mountPath"]: m["subPath"] for m in container["volumeMounts"] if m["name"] == "data"}
    # state lives on the shared claim, so a rerun in a fresh pod finds finished shards and cached results
    assert set(mounts) == {f"/opt/prm-data/{d}" for d in ("warehouse/data", "exports", "reports", "checkpoints",
                                                          ".prefect")}
    [data] = [v for v in pod["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "prm-data"
    assert container["resources"]["limits"].get("nvidia.com/gpu") == gpus
    if gpus:
        assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert render(template, gpus=4)["job_manifest"]["spec"]["template"]["spec"]["containers"][0][
            "resources"]["limits"]["nvidia.com/gpu"] == 4


def test_each_vllm_server_owns_one_gpu_with_prefix_caching_at_the_addresses_the_configs_list():
    docs = list(yaml.safe_load_all((DEPLOY / "vllm" / "k8s.yaml").read_text()))
    sets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    addresses: dict[str, set[str]] = {}
    for name, s in sets.items():
        assert services[name]["spec"]["clusterIP"] == "None"  # headless: one DNS name per pod
        [container] = s["spec"]["template"]["spec"]["containers"]
        assert "--enable-prefix-caching" in container["args"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        model = container["args"][0]
        addresses.setdefault(model, set()).update(
            f"http://{name}-{i}.{name}.prm-data.svc.cluster.local:8000/v1" for i in range(s["spec"]["replicas"]))
    cluster = RunConfig.model_validate(deployments()["nightly-cluster"]["parameters"]["config"])
    for role, backend in backends(cluster).items():
        assert set(backend.base_urls) == addresses[backend.model], role

    unit = (DEPLOY / "vllm" / "vllm@.service").read_text()
    assert "--enable-prefix-caching" in unit and "CUDA_VISIBLE_DEVICES=%i" in unit
    layout = re.findall(r'^\s+"(\d+) (\S+)"$', (DEPLOY / "vllm" / "install-units.sh").read_text(), re.M)
    local = {}
    for gpu, model in layout:
        local.setdefault(model, set()).add(f"http://127.0.0.1:{8000 + int(gpu)}/v1")
    for role, backend in backends(shipped("vllm")).items():
        assert set(backend.base_urls) == local[backend.model], role


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_vllm_systemd_unit_verifies(tmp_path):
    shutil.copy(DEPLOY / "vllm" / "vllm@.service", tmp_path / "vllm@.service")
    (tmp_path / "vllm@0.service").symlink_to("vllm@.service")
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "vllm@0.service")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "vllm@" not in out.stderr, out.stderr


# ------------------------------------------------------- a real Prefect server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, killed as one


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _wait_healthy(api: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def _tiny_sim_config(root: Path) -> RunConfig:
    return RunConfig.model_validate({
        "name": "deploytest", "warehouse": str(root / "warehouse"), "reports_dir": str(root / "reports"),
        "problems": {"source": "bank:4:2:0"}, "rollouts": {"n": 2},
        "policy": {"kind": "sim", "model": "sim-policy"},
        "labeling": {"labelers": ["mc_value", "tool_verify"], "mc_value": {"k": 2}},
        "aggregate": {"policy": "hybrid"},  # the policy that fuses MC and tool labels
        "export": {"out_dir": str(root / "export")}, "shard_size": 4})


@pytest.mark.slow
@pytest.mark.network
def test_a_real_prefect_server_schedules_nightly_at_2am_utc_and_a_process_worker_runs_it(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PWD": str(REPO),  # the nightly pull step's working directory
           "PRM_DATA_IMAGE": "prm-data:test", "PRM_DATA_GPU_IMAGE": "prm-data-gpu:test"}
    log = tmp_path / "prefect.log"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log))
        _wait_healthy(api, procs[0], log)
        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="prm-data-process", type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
            for pool, template in (("prm-data-k8s", "flows-pool.json"), ("prm-data-gpu", "gpu-pool.json")):
                client.create_work_pool(WorkPoolCreate(name=pool, type="kubernetes", base_job_template=json.loads(
                    (DEPLOY / "k8s" / template).read_text())))

        deployed = subprocess.run([PREFECT, "--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--all"],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("nightly/nightly")
            assert nightly.work_pool_name == "prm-data-process"
            assert RunConfig.model_validate(nightly.parameters["config"]) == shipped("local")
            [schedule] = nightly.schedules
            assert schedule.active and (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")

            scheduled_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.SCHEDULED])))
            deadline, runs = time.monotonic() + 60, []
            while len(runs) < 3 and time.monotonic() < deadline:
                runs = client.read_flow_runs(flow_run_filter=scheduled_filter, deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[nightly.id])))
                time.sleep(0.5)
            starts = sorted(r.expected_start_time.astimezone(timezone.utc) for r in runs)
            assert len(starts) >= 3, "the server scheduled no nightly runs"
            now = datetime.now(timezone.utc)
            assert all((t.hour, t.minute, t.second) == (2, 0, 0) for t in starts)
            assert now < starts[0] <= now + timedelta(days=1)
            assert all(b - a == timedelta(days=1) for a, b in zip(starts, starts[1:]))

            cluster = client.read_deployment_by_name("nightly/nightly-cluster")
            assert cluster.job_variables == {"image": "prm-data:test"}
            train = client.read_deployment_by_name("train_prm/train-prm")
            assert train.job_variables == {"image": "prm-data-gpu:test", "gpus": 1}
            [automation] = client.read_resource_related_automations(f"prefect.deployment.{train.id}")
            assert automation.trigger.expect == {"prefect.flow-run.Completed"}
            assert automation.trigger.match_related.model_dump() == {
                "prefect.resource.role": "deployment", "prefect.resource.name": "nightly-cluster"}

            # no 02:00 run may reach the worker below, whatever the time of day this test runs at
            client.update_deployment_schedule(nightly.id, schedule.id, active=False)
            config = _tiny_sim_config(tmp_path)
            triggered = run_deployment("nightly/nightly", parameters={"config": config.model_dump(mode="json")},
                                       timeout=0)

        worker = subprocess.run([PREFECT, "worker", "start", "--pool", "prm-data-process", "--run-once"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

        with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
            run = client.read_flow_run(triggered.id)
        assert run.state.is_completed(), (run.state, worker.stdout[-3000:] + worker.stderr[-3000:])
        wh = Warehouse(config.warehouse)
        [row] = wh.rows("SELECT status, config_json FROM runs")
        assert row["status"] == "completed" and RunConfig.model_validate_json(row["config_json"]) == config
        assert wh.scalar("SELECT count(*) FROM rollouts") == 4 * 2
        assert wh.scalar("SELECT count(*) FROM step_labels WHERE labeler = 'mc_value'") > 0
    finally:
        for proc in reversed(procs):
            _stop(proc)
