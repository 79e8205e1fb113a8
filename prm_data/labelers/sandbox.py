"""Run untrusted code from a step in an operating-system sandbox (bubblewrap namespaces).

Tool-verified PRM data (GroundedPRM, arXiv:2510.14942; Themis, arXiv:2310.01045)
executes the code a model wrote. That code is hostile by default. An in-process
audit hook cannot contain it (it never sees `openat` with a `dir_fd`, `/proc`,
or what a C extension does: issue 12), so each run is a child process that the
kernel isolates (`sandbox_jail` has the details):

- **no secrets**: it never receives the parent's environment (an explicit,
  empty one instead), runs as an unprivileged uid in its own user, mount and pid
  namespaces, and sees no /etc, /home, /root, host /tmp, nor any other process;
- **no writes out**: everything it sees is read-only except its working folder,
  a private tmpfs that lives only as long as the run;
- **no network**: its own network namespace holds only a loopback;
- **limits** (setrlimit inside the namespaces, before the code is read): CPU
  seconds, address space, processes and threads, largest file (stdout and
  stderr included: they are files), open files, no core dumps; the tmpfs size;
  and a wall-clock timeout after which the whole sandbox is killed.

Where the isolation cannot be had (no bubblewrap, or the kernel refuses the
namespaces), `run_python` raises `SandboxUnavailable` with a one-line reason:
there is no weaker fallback. `require_isolation()` gives the same refusal up
front, before a run pays for any model call.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prm_data.labelers import sandbox_jail

SETUP_FAILED = 125  # sandbox_boot's exit code when it could not isolate the run


class SandboxUnavailable(OSError):
    """This machine cannot isolate model-written code; the message says why, in one line.

    An OSError (the operating system lacks something), not a ValueError: raised from a
    config validator it reaches the caller as itself, one line, not as a pydantic report."""


class SandboxConfig(BaseModel):
    """Limits for one code run. Defaults suit short arithmetic scripts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_seconds: int = Field(2, ge=1, description="RLIMIT_CPU: CPU seconds before SIGXCPU.")
    wall_seconds: float = Field(5.0, gt=0, description="Wall-clock limit; then the whole sandbox is killed.")
    memory_mb: int = Field(512, ge=32, description="RLIMIT_AS: address-space limit in MiB, per process.")
    max_file_bytes: int = Field(1_000_000, ge=1024,
                                description="RLIMIT_FSIZE: largest file the code may write, stdout included.")
    max_output_chars: int = Field(20_000, ge=100, description="Characters of stdout/stderr kept in the result.")
    max_open_files: int = Field(64, ge=16, description="RLIMIT_NOFILE.")
    max_processes: int = Field(16, ge=2, description="RLIMIT_NPROC: processes plus threads of one run "
                               "(counted in the run's own user namespace).")
    tmp_mb: int = Field(64, ge=1, description="Size of the run's private tmpfs working folder, in MiB.")
    run_as_uid: int = Field(65534, ge=1, description="Unprivileged uid (and gid) the code runs as when prm-data "
                            "runs as root; any other caller's code runs as that caller, inside a user namespace.")
    network_isolation: Literal["auto", "namespace"] = Field(
        "namespace", description="Kept so older configs load: every run has its own network namespace "
        "('auto' means the same). 'audit', the in-process hook, was removed: it did not isolate (issue 12).")

    @field_validator("network_isolation", mode="before")
    @classmethod
    def _no_audit_mode(cls, value):
        if value == "audit":
            raise ValueError("network_isolation='audit' was removed: an in-process audit hook cannot isolate "
                             "code (issue 12); every run now gets its own namespaces")
        return value


@dataclass(frozen=True)
class SandboxResult:
    status: str  # ok | error | timeout | memory | output_limit | sandbox_error
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    network_namespace: bool  # whether the run had its own (empty) network namespace: always, now

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@lru_cache(maxsize=1)
def isolation_problem() -> str | None:
    """None when this machine can isolate code; else one line saying why not and what to do."""
    if not os.path.exists("/proc/self/ns/user"):
        return "this system has no Linux namespaces, which the code sandbox needs"
    if sandbox_jail.bwrap_path() is None:
        return ("the code sandbox needs bubblewrap (`bwrap`), which is not installed: "
                "`apt-get install bubblewrap` (scripts/setup.sh does it when run as root)")
    try:
        result = _run("import os\nprint(os.getuid())", SandboxConfig(wall_seconds=30, cpu_seconds=10))
    except OSError as exc:
        return f"bubblewrap could not start: {exc}"
    if result.status != "ok" or result.stdout.strip() == "0":
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return f"bubblewrap cannot isolate code on this machine ({why}); unprivileged user namespaces may be off"
    return None


def require_isolation() -> None:
    """Raise `SandboxUnavailable` (one-line message) unless code can be isolated here."""
    problem = isolation_problem()
    if problem is not None:
        raise SandboxUnavailable(f"tool_verify.run_code cannot run model-written code safely: {problem}")


def run_python(code: str, config: SandboxConfig = SandboxConfig()) -> SandboxResult:
    """Run `code` as a script in the sandbox and report what happened; never raises for the code's faults.

    Raises `SandboxUnavailable` when the machine cannot isolate it (never runs it unisolated)."""
    require_isolation()
    return _run(code, config)


def _limits(config: SandboxConfig) -> dict[str, int]:
    return {"RLIMIT_CPU": config.cpu_seconds, "RLIMIT_AS": config.memory_mb * 1024 * 1024,
            "RLIMIT_FSIZE": config.max_file_bytes, "RLIMIT_NOFILE": config.max_open_files,
            "RLIMIT_NPROC": config.max_processes, "RLIMIT_CORE": 0}


def _run(code: str, config: SandboxConfig) -> SandboxResult:
    bwrap = sandbox_jail.bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (`bwrap`) disappeared from PATH")
    cmd = sandbox_jail.command(bwrap, tmp_bytes=config.tmp_mb * 1024 * 1024, run_as_uid=config.run_as_uid,
                               limits=_limits(config))
    logs = Path(tempfile.mkdtemp(prefix="prm-sandbox-out-"))
    try:
        start = time.monotonic()
        with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
            proc = subprocess.Popen(cmd, env={}, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                    start_new_session=True, close_fds=True)
            timed_out = False
            try:
                proc.communicate(code.encode("utf-8", "surrogateescape"), timeout=config.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)  # bwrap's death takes the child's whole pid namespace with it
                proc.wait()
        wall = time.monotonic() - start
        stdout = _read(logs / "stdout", config.max_output_chars)
        stderr = _read(logs / "stderr", config.max_output_chars)
        return SandboxResult(_status(proc.returncode, timed_out, stderr), proc.returncode, stdout, stderr,
                             wall, True)
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return  # the group is already gone: nothing left to kill


def _read(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit * 4)
    return data.decode("utf-8", errors="replace")[:limit]


def _status(returncode: int, timed_out: bool, stderr: str) -> str:
    # bwrap exits 128 + N when its child dies of signal N
    signum = returncode - 128 if returncode > 128 else (-returncode if returncode < 0 else 0)
    if timed_out or signum in (signal.SIGXCPU, signal.SIGKILL):
        return "timeout"
    if signum == signal.SIGXFSZ or "[Errno 27] File too large" in stderr:
        return "output_limit"  # Python ignores SIGXFSZ, so the write fails with EFBIG instead
    if returncode == 0:
        return "ok"
    if returncode == SETUP_FAILED and "sandbox setup failed:" in stderr or stderr.startswith("bwrap:"):
        return "sandbox_error"
    if "MemoryError" in stderr or signum == signal.SIGSEGV:
        return "memory"
    return "error"
