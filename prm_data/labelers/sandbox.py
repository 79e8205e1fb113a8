"""Run untrusted code from a step in a subprocess that cannot reach out or write out.

Tool-verified PRM data (GroundedPRM, arXiv:2510.14942; Themis, arXiv:2310.01045)
executes the code a model wrote. That code is hostile by default, so each run gets:

- **no network**: a fresh network namespace (`unshare -n`, only where it works:
  root or user namespaces allowed), and always a Python audit hook that refuses
  every `socket.*` event — so the guarantee holds without namespaces too;
- **a private temporary directory** as working directory, removed afterwards;
  the audit hook refuses opening for write, creating, removing, renaming,
  linking or chmod-ing any path outside it, and refuses starting processes,
  `ctypes` and signals to other processes;
- **no secrets**: a clean environment, and the hook refuses reading other
  processes' `/proc/<pid>/` entries (the parent's `environ` holds HF_TOKEN and
  API keys) and credential files (`secret_paths()`: the Hub token, ~/.netrc, ...);
- **limits**: RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space), RLIMIT_FSIZE
  (largest file, which also caps stdout/stderr since they go to files),
  RLIMIT_NOFILE, no core dumps, and a wall-clock timeout after which the whole
  process group is killed.

The audit hook (PEP 578) cannot be removed from Python code once installed; it
is installed by a bootstrap passed with `-c` before the user's code is read, and
the interpreter runs isolated (`-I`: no PYTHON* variables, no user site).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REFUSED_MARK = "sandbox refused:"

BOOTSTRAP = r'''
import os, sys
sys.dont_write_bytecode = True
_ROOT = os.path.realpath(sys.argv[1])
_SECRETS = tuple(os.path.realpath(p) for p in sys.argv[2].split(os.pathsep) if p)
_MARK = "sandbox refused:"
_BLOCKED_IMPORTS = {"cffi", "_cffi_backend", "_posixsubprocess", "pty", "multiprocessing"}
_PATH_EVENTS = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
                "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.rename": (0, 1),
                "os.replace": (0, 1), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
                "shutil.copytree": (1,), "shutil.move": (1,), "os.mkfifo": (0,), "os.mknod": (0,)}
_DENY_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                "os.fork", "os.forkpty", "pty.spawn", "os.kill", "os.killpg", "os.link",
                "os.symlink", "ctypes.call_function", "ctypes.cdata", "ctypes.string_at",
                "ctypes.wstring_at", "ctypes.set_errno", "ctypes.dlsym", "socket.", "urllib.Request", "http.client.connect",
                "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.",
                "webbrowser.open", "resource.setrlimit", "resource.prlimit")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _inside(path):
    if isinstance(path, int):
        return True  # an already open descriptor
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return real == _ROOT or real.startswith(_ROOT + os.sep)

def _secret(path):
    """Another process's /proc entry (its environment holds tokens) or a credentials location."""
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return True
    parts = real.split(os.sep)
    if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and int(parts[2]) != os.getpid():
        return True
    return any(real == s or real.startswith(s + os.sep) for s in _SECRETS)

def _refuse(what):
    raise PermissionError(f"{_MARK} {what}")

def _hook(event, args):
    if event == "open":
        path, mode, flags = (list(args) + [None, None, 0])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS)
        if path is None or _inside(path):
            return
        if _secret(path):
            _refuse(f"reading {path!r}: another process or a credentials file")
        if writing:
            _refuse(f"write outside the sandbox directory: {path!r}")
        if not isinstance(path, int) and os.path.isdir(path):
            # a directory descriptor would let os.open(..., dir_fd=fd) write outside unseen
            _refuse(f"opening a directory outside the sandbox: {path!r}")
        return
    if event in _PATH_EVENTS:
        for i in _PATH_EVENTS[event]:
            if i < len(args) and args[i] is not None and not _inside(args[i]):
                _refuse(f"{event} outside the sandbox directory: {args[i]!r}")
        return
    if event == "ctypes.dlopen" and args and args[0] is not None:
        _refuse(f"loading native library {args[0]!r}")
    if event == "import" and args and str(args[0]).split(".")[0] in _BLOCKED_IMPORTS:
        raise ImportError(f"{_MARK} import of {args[0]}")
    for prefix in _DENY_EVENTS:
        if event.startswith(prefix):
            _refuse(event)

# `subprocess` is imported by libraries (sympy) at import time: keep the module, but take away
# the primitive it forks with, and refuse importing that primitive afresh.
import subprocess, _posixsubprocess

def _no_fork_exec(*args, **kwargs):
    _refuse("starting a process")

_posixsubprocess.fork_exec = _no_fork_exec
subprocess._fork_exec = _no_fork_exec
del sys.modules["_posixsubprocess"], _posixsubprocess
sys.addaudithook(_hook)
del _hook
_code_path = os.path.join(_ROOT, "main.py")
with open(_code_path, encoding="utf-8") as _fh:
    _source = _fh.read()
_globals = {"__name__": "__main__", "__file__": _code_path, "__builtins__": __builtins__}
exec(compile(_source, _code_path, "exec"), _globals)
'''


class SandboxConfig(BaseModel):
    """Limits for one code run. Defaults suit short arithmetic scripts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_seconds: int = Field(2, ge=1, description="RLIMIT_CPU: CPU seconds before SIGXCPU.")
    wall_seconds: float = Field(5.0, gt=0, description="Wall-clock limit; then the process group is killed.")
    memory_mb: int = Field(512, ge=32, description="RLIMIT_AS: address-space limit in MiB.")
    max_file_bytes: int = Field(1_000_000, ge=1024,
                                description="RLIMIT_FSIZE: largest file the code may write, stdout included.")
    max_output_chars: int = Field(20_000, ge=100, description="Characters of stdout/stderr kept in the result.")
    max_open_files: int = Field(64, ge=16, description="RLIMIT_NOFILE.")
    network_isolation: Literal["auto", "namespace", "audit"] = Field(
        "auto", description="namespace: require `unshare -n`; audit: audit hook only; auto: both when available.")


@dataclass(frozen=True)
class SandboxResult:
    status: str  # ok | error | refused | timeout | memory | output_limit
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    network_namespace: bool  # whether the run had its own (empty) network namespace

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@lru_cache(maxsize=1)
def namespace_prefix() -> tuple[str, ...] | None:
    """`unshare` arguments that give a process an empty network namespace here, or None."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    for args in ((unshare, "-n", "--"), (unshare, "-r", "-n", "--")):
        try:
            probe = subprocess.run([*args, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return args
    return None


def secret_paths() -> list[str]:
    """Where this machine keeps credentials: the sandboxed code may not read them.

    The Hugging Face token (HF_TOKEN_PATH, HF_HOME), ~/.netrc, ~/.ssh, cloud and
    registry credentials, mounted secrets. (Other processes' /proc entries,
    whose `environ` holds HF_TOKEN and API keys, are refused by the hook itself.)
    """
    home = Path.home()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    paths = [os.environ.get("HF_TOKEN_PATH"), os.environ.get("HF_HOME"), cache / "huggingface",
             home / ".huggingface", home / ".netrc", home / ".ssh", home / ".aws", home / ".azure",
             home / ".config" / "gcloud", home / ".config" / "gh", home / ".git-credentials", home / ".docker",
             home / ".pypirc", home / ".kube", "/run/secrets", "/var/run/secrets"]
    return [str(p) for p in paths if p]


def _limits(config: SandboxConfig):
    def apply() -> None:
        mem = config.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (config.cpu_seconds, config.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (config.max_file_bytes, config.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (config.max_open_files, config.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_python(code: str, config: SandboxConfig = SandboxConfig()) -> SandboxResult:
    """Run `code` as a script in the sandbox and report what happened; never raises for the code's faults."""
    prefix: tuple[str, ...] = ()
    if config.network_isolation in ("auto", "namespace"):
        found = namespace_prefix()
        if found is None and config.network_isolation == "namespace":
            raise RuntimeError("network_isolation='namespace' but `unshare -n` does not work here "
                               "(needs root or unprivileged user namespaces); use 'auto' or 'audit'")
        prefix = found or ()
    workdir = Path(tempfile.mkdtemp(prefix="prm-sandbox-"))
    logs = Path(tempfile.mkdtemp(prefix="prm-sandbox-out-"))
    try:
        (workdir / "main.py").write_text(code, encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
               "LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        cmd = [*prefix, sys.executable, "-I", "-c", BOOTSTRAP, str(workdir), os.pathsep.join(secret_paths())]
        start = time.monotonic()
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True, preexec_fn=_limits(config))
            timed_out = False
            try:
                proc.wait(timeout=config.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                proc.wait()
            _kill_group(proc)  # stray children (there should be none: process creation is refused)
        wall = time.monotonic() - start
        stdout = _read(logs / "stdout", config.max_output_chars)
        stderr = _read(logs / "stderr", config.max_output_chars)
        status = _status(proc.returncode, timed_out, stderr)
        return SandboxResult(status, proc.returncode, stdout, stderr, wall, bool(prefix))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return  # the group is already gone: nothing left to kill


def _read(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit * 4)
    text = data.decode("utf-8", errors="replace")
    return text[:limit]


def _status(returncode: int, timed_out: bool, stderr: str) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    if returncode == -signal.SIGXFSZ or "[Errno 27] File too large" in stderr:
        return "output_limit"  # Python ignores SIGXFSZ, so the write fails with EFBIG instead
    if returncode == 0:
        return "ok"
    if "MemoryError" in stderr or returncode == -signal.SIGSEGV:
        return "memory"
    if REFUSED_MARK in stderr:
        return "refused"
    return "error"
