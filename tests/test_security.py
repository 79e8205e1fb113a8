"""Security: hostile code in the sandbox, read-only queries, secrets kept out of everything
the pipeline writes, and SQL built only from parameters.

tests/test_sandbox.py covers network, writes, escape routes and limits; tests/test_cli.py
covers `prm-data query` refusing writes. Here: what those leave open — reading secrets
(another process's environment, credential files), resource abuse, secrets in a whole
run's outputs (logs, tables, exports, reports, the pushed dataset), a server that echoes
the API key, and an audit of every SQL string the code builds.
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.failures import FailureLog
from prm_data.labelers.sandbox import run_python
from prm_data.llm.client import LLMClient
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.types import GenerationRequest, Message
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse
from reliability_support import ROOT, cli_command, http_config

HF_TOKEN = "hf_SecurityTestToken0123456789abcdefXYZ"
API_KEY = "sk-SecurityTestApiKey0123456789abcdef"
SECRETS = (HF_TOKEN, API_KEY)
runner = CliRunner()


def in_child(code: str, env: dict) -> dict:
    """Run `code` (which prints one JSON line) in a fresh interpreter started with `env`."""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ sandbox
READ_PARENT_ENV = r"""
import json, os
from prm_data.labelers.sandbox import run_python
own = open(f"/proc/{os.getpid()}/environ").read()
r = run_python("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())")
env = run_python("import os\nprint(sorted(os.environ))")
print(json.dumps({"own": own, "status": r.status, "out": r.stdout + r.stderr, "env": env.stdout}))
"""


def test_sandboxed_code_cannot_read_the_environment_of_the_process_that_runs_it():
    seen = in_child(READ_PARENT_ENV, {"HF_TOKEN": HF_TOKEN})
    assert HF_TOKEN in seen["own"]  # the token really is in the parent's /proc entry
    # its parent, seen from its own pid namespace, is bubblewrap's init (root's, not its to read)
    assert seen["status"] == "error" and "PermissionError: [Errno 13]" in seen["out"]
    assert HF_TOKEN not in seen["out"]
    assert "HF_TOKEN" not in seen["env"]  # and the sandbox's own environment is clean


def test_sandboxed_code_cannot_read_the_hub_token_file(tmp_path):
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    (hf_home / "token").write_text(HF_TOKEN)
    hostile = f"print(open({str(hf_home / 'token')!r}).read())"
    code = ("import json\nfrom prm_data.labelers.sandbox import run_python\n"
            f"r = run_python({hostile!r})\n"
            "print(json.dumps({'status': r.status, 'out': r.stdout + r.stderr}))")
    seen = in_child(code, {"HF_HOME": str(hf_home)})
    assert seen["status"] == "error" and "FileNotFoundError" in seen["out"]  # not in its mount namespace
    assert HF_TOKEN not in seen["out"]


@pytest.mark.parametrize("code, status", [
    ("import os\nwhile True:\n    os.fork()", "error"),  # a fork bomb: fork fails at max_processes
    ("open('fill.bin', 'wb').write(b'x' * 50_000_000)", "output_limit"),  # filling the disk from inside
    ("import threading, time\nfor _ in range(10_000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
     "timeout"),  # a thread bomb: the 16th thread cannot start; the 15 sleeping ones are killed at the wall limit
])
def test_resource_abuse_is_stopped(code, status):
    result = run_python(code)
    assert result.status == status, (result.status, result.stderr[-500:])
    assert result.wall_s < 15


LABEL_HOSTILE_STEP = r"""
import json
from prm_data.failures import FailureLog
from prm_data.labelers.inputs import Solution
from prm_data.labelers.tool_verify import ToolVerifyConfig, label_tool_verify
step = "Step 1: compute it.\n```python\nimport os\nprint(open(f'/proc/{os.getppid()}/environ').read())\n```\nSo it is 4."
sol = Solution("p1", "r1", "What is 2 + 2?", (step,), answer="4")
failures = FailureLog("security")
labels = label_tool_verify([sol], ToolVerifyConfig(run_code=True), failures)
print(json.dumps({"evidence": [l.evidence for l in labels], "failures": [f["reason"] for f in failures.rows]}))
"""


def test_a_step_whose_code_exfiltrates_the_token_leaves_no_trace_of_it_in_its_label():
    seen = in_child(LABEL_HOSTILE_STEP, {"HF_TOKEN": HF_TOKEN})
    assert HF_TOKEN not in json.dumps(seen)
    [check] = seen["evidence"][0]["checks"]
    assert check["check"] == "code" and check["status"] == "error"
    assert seen["failures"] == ["code block error"]


# --------------------------------------------------------------- prm-data query
@pytest.fixture()
def warehouse(tmp_path):
    root = tmp_path / "wh"
    assert runner.invoke(app, ["--warehouse", str(root), "problems", "add", "bank:4"]).exit_code == 0
    return root


@pytest.mark.parametrize("sql", [
    "SELECT getenv('HF_TOKEN')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_text('{root}/.instance_id')",  # the warehouse folder, outside tables/
    "SELECT * FROM read_json_auto('{root}/llm_cache_journal/*.jsonl')",
    "SELECT * FROM read_blob('{root}/llm_cache.sqlite')",  # the request cache's store (prompts, answers)
    "SELECT * FROM read_text('{root}/llm_cache.sqlite')",
    "SELECT * FROM glob('{home}/*')",
])
def test_query_cannot_read_the_environment_or_files_outside_the_tables(warehouse, sql, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    (warehouse / "llm_cache.sqlite").write_text(f"a stored prompt that quotes {HF_TOKEN}")
    result = runner.invoke(app, ["--warehouse", str(warehouse), "query",
                                 sql.format(root=warehouse, home=Path.home())])
    assert result.exit_code == 1, result.output
    assert HF_TOKEN not in result.output and "root:" not in result.output


def test_query_cannot_reach_the_network(warehouse):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(2)
    port = server.getsockname()[1]
    try:
        result = runner.invoke(app, ["--warehouse", str(warehouse), "query",
                                     f"SELECT * FROM read_csv('http://127.0.0.1:{port}/x.csv')"])
        assert result.exit_code == 1
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_user_values_are_parameters_never_sql(warehouse):
    evil = "x' OR '1'='1"
    result = runner.invoke(app, ["--warehouse", str(warehouse), "query", "--format", "json",
                                 "SELECT count(*) AS n FROM problems WHERE problem_id = ?", "--param", evil])
    assert result.exit_code == 0 and json.loads(result.stdout) == [{"n": 0}]
    refused = runner.invoke(app, ["--warehouse", str(warehouse), "problems", "add", "bank:2", "--run-id", evil])
    assert refused.exit_code != 0 and Warehouse(warehouse).scalar("SELECT count(*) FROM problems") == 4


def test_text_that_looks_like_sql_is_stored_verbatim(tmp_path):
    question = "Bob has 3 pens'); DROP VIEW problems; -- How many pens does Bob have?"
    source = tmp_path / "p.jsonl"
    source.write_text(json.dumps({"question": question, "answer": "3"}) + "\n")
    root = tmp_path / "wh"
    assert runner.invoke(app, ["--warehouse", str(root), "problems", "add", str(source)]).exit_code == 0
    assert Warehouse(root).rows("SELECT question FROM problems") == [{"question": question}]


# Every f-string in the code that holds SQL, with what it interpolates and why that is safe.
AUDITED_SQL = {
    ("prm_data/warehouse.py", ("name", "sql_literal(glob)")): "table names from schema.TABLES; a quoted path",
    ("prm_data/run_warehouse.py", ("name", "paths", "union")):
        "table names from schema.TABLES; quoted paths; 'true' or 'false'",
    ("prm_data/run_warehouse.py", ("self.schema",)): "'run_' and a hex digest of the run id",
    ("prm_data/warehouse.py", ("n",)): "view names read from duckdb_views()",
    ("prm_data/pipeline/summary.py", ("s['run_id']",)): "a query shown to the user, not executed",
    ("prm_data/commands/problems.py", ("run_id",)): "a query shown to the user, not executed",
    ("prm_data/sql_guard.py", ("_statement_name(statement)",)): "an error message",
    ("prm_data/llm/cache.py", ("', '.join(_FIELDS)", "', '.join('?' * len(_FIELDS))")):
        "the answer store's own column names and one ? per column",
    ("prm_data/llm/cache.py", ("', '.join(_FIELDS)", "', '.join('?' * (len(_FIELDS) + 1))")):
        "the answer store's own column names and one ? per column",
    ("prm_data/llm/cache.py", ("_BUSY_TIMEOUT_MS",)): "an integer constant",
    ("prm_data/llm/cache.py", ("'FULL' if fsync else 'OFF'",)): "one of two literals",
    ("prm_data/llm/cache.py", ("', '.join(_COLUMNS)",)): "the answer store's own column names",
    ("prm_data/run_quality.py", ("_KEPT",)): "a constant FROM/WHERE clause with $run/$policy parameters",
    ("prm_data/views_file.py", ("_literal(tmp)", "VIEWS_STORAGE_VERSION")):
        "a quoted path the warehouse chose and a constant storage version",
    ("prm_data/warehouse.py", ("paths", "where")): "shard paths the warehouse listed (quoted) and a clause of ? parameters",
    ("prm_data/storage/object_warehouse.py", ("paths", "where")):
        "object keys the warehouse listed (quoted) and a clause of ? parameters",
    ("prm_data/storage/object_warehouse.py", ("name", "paths")): "table names from schema.TABLES; quoted object keys",
    ("prm_data/storage/object_warehouse.py", ("self.schema",)): "'main', or 'run_' and a hex digest of the run id",
    ("prm_data/storage/object_warehouse.py", ("n",)): "view names read from duckdb_views()",
}
SQL_WORDS = re.compile(r"\b(SELECT|FROM|WHERE|INSERT|UPDATE|DELETE|CREATE|COPY|ATTACH|PRAGMA)\b")


def test_every_sql_string_built_with_interpolation_is_audited():
    found = {}
    for top in ("prm_data", "flows"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if SQL_WORDS.search(text):
                        parts = tuple(ast.unparse(v.value) for v in node.values if isinstance(v, ast.FormattedValue))
                        found[(str(path.relative_to(ROOT)), parts)] = f"line {node.lineno}: {text[:60]!r}"
    unaudited = {k: v for k, v in found.items() if k not in AUDITED_SQL}
    assert not unaudited, f"SQL built by interpolation; use ? parameters or audit it here: {unaudited}"


# ------------------------------------------------------------ secrets in a run
def scan(text: str) -> list[str]:
    return [s[:6] for s in SECRETS if s in text]


@pytest.mark.slow
@pytest.mark.network
def test_a_whole_run_with_a_hub_push_leaves_no_secret_anywhere(tmp_path):
    from hub_server import HubServer

    with HubServer(token=HF_TOKEN) as hub, SimServer(ServeSimConfig(api_key=API_KEY)) as sim:
        config = http_config(tmp_path / "night.yaml", sim.url, source="bank:4:2:3",
                             backend={"api_key_env": "PRM_SECURITY_API_KEY"},
                             export={"out_dir": "exports/night", "push_to_hub": "tester/night",
                                     "scope": "run"})
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": HF_TOKEN, "PRM_SECURITY_API_KEY": API_KEY,
               "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf_home"), "HF_DEBUG": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
        proc = subprocess.run(cli_command("--warehouse", str(tmp_path / "wh"), "run", "-c", str(config), "--serial"),
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        pushed = hub.files("tester/night")
        assert sim.outcomes()["ok"] > 0  # the key was needed: the server refuses requests without it
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(name.endswith(".parquet") for name in pushed)

    leaks = []
    leaks += [("stdout/stderr", s) for s in scan(proc.stdout + proc.stderr)]
    wh = Warehouse(tmp_path / "wh")
    for table in [r["view_name"] for r in wh.rows("SELECT view_name FROM duckdb_views() WHERE NOT internal")]:
        for row in wh.rows(f'SELECT * FROM "{table}"'):
            leaks += [(f"table {table}", s) for s in scan(json.dumps(row, default=str))]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [(str(path.relative_to(tmp_path)), s[:6]) for s in SECRETS if s.encode() in data]
            if path.suffix == ".parquet" and not path.name.startswith("."):
                leaks += [(str(path.relative_to(tmp_path)), s) for s in scan(json.dumps(
                    pq.read_table(path).to_pylist(), default=str))]
    for name, data in pushed.items():
        leaks += [(f"hub:{name}", s[:6]) for s in SECRETS if s.encode() in data]
    assert leaks == []
    [run] = wh.rows("SELECT config_json FROM runs")
    assert "PRM_SECURITY_API_KEY" in run["config_json"]  # the variable's name is kept; its value never


class EchoingServer(BaseHTTPRequestHandler):
    """An OpenAI-style server that refuses every key and echoes it back, as some gateways do."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                                     "type": "invalid_request_error"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return


@pytest.mark.network
def test_an_api_key_echoed_by_the_server_is_scrubbed_from_the_failures_it_causes(monkeypatch):
    monkeypatch.setenv("PRM_SECURITY_API_KEY", API_KEY)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), EchoingServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://user:{API_KEY}@127.0.0.1:{httpd.server_address[1]}/v1"  # credentials in the URL too
        backend = OpenAIBackend("m", [url], api_key_env="PRM_SECURITY_API_KEY", continuation="completions")
        failures = FailureLog("echo")
        q = generate_bank(1, seed=1)[0].question
        with LLMClient(backend, failures=failures, retry=RetryPolicy(max_retries=0, timeout_s=5)) as client:
            [result] = client.generate([GenerationRequest(messages=(Message("user", q),), purpose="rollout")])
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not result.ok and "HTTP 401" in result.error
    assert failures.rows and all(API_KEY not in json.dumps(r, default=str) for r in failures.rows)
    assert "***" in failures.rows[0]["reason"]
