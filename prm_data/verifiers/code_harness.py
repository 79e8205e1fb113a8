"""The test harness that runs inside the sandbox: a solution's unit tests, one by one, each under a time limit.

This file is not imported: `code_tests` sends its text to the sandbox
(`prm_data.labelers.sandbox.run_python`) after one line `SPEC = (...)` holding
the per-run token, the problem's setup, the solution's code, the entry point,
the tests and the limits. Two processes inside the sandbox:

- the harness (this process) writes every result line to stdout, framed by the
  token; it never runs a line of the solution. It first makes itself
  non-dumpable, so another process of the same uid cannot open its file
  descriptors through /proc or ptrace it;
- a worker forked from it runs `setup` and the solution once (under
  `load_seconds`), then each test on request (under `test_seconds`, by
  `setitimer`), in a copy of the solution's namespace. Its stdout and stderr
  are a size-limited file (RLIMIT_FSIZE), emptied before each test; it holds
  no descriptor of the harness's stdout. It answers each test over a pipe,
  quoting a nonce the harness drew for that test after the solution was
  loaded, so lines written in advance by the solution count for nothing.

The harness waits for each answer with its own deadline (`test_seconds` plus
a grace): a worker that hangs in C code, ignores the alarm, exits
(`os._exit`, `sys.exit` from a thread), crashes the interpreter or is killed
by a limit is killed and reaped, the test fails with the reason, and the next
test runs in a fresh worker. Processes a test leaves behind (forks) are killed
before the next test, which then runs in a fresh worker too. When the whole
budget (`budget_seconds`) is spent, the remaining tests fail as not run.

Output lines: `<token>\\t<kind>\\t...` with kinds `start`, `load`
(`ok`/`fail`, seconds, error), `test` (index, `P`/`F`, seconds, error) and
`end` (CPU seconds of the harness and its reaped workers); errors are one line, `unicode_escape`d. What this cannot stop: code that
deliberately reads the harness out of its own process's memory can report its
own test as passed (the test's assertion runs in that process); it cannot
speak for another test, nor write on the harness's stdout.
"""

import os
import select
import signal
import sys
import time

_ERROR_CHARS = 240  # one line of error per test
_LINE_LIMIT = 4096  # the longest answer line the harness reads from a worker
_OUTPUT = "/tmp/.solution-output"


class _TestTimeout(BaseException):
    """Raised by SIGALRM in the worker: a BaseException, so `except Exception` in the solution does not eat it."""


def _one_line(text):
    text = " ".join(str(text).split())
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 3] + "..."


def _describe(exc, limit):
    try:
        if isinstance(exc, _TestTimeout):
            return f"timeout: ran over {limit:g} s"
        if isinstance(exc, SyntaxError):
            return _one_line(f"SyntaxError: {exc.msg} (line {exc.lineno})")
        if isinstance(exc, SystemExit):
            return _one_line(f"SystemExit({exc.code!r}): the code called exit")
        if isinstance(exc, OSError) and exc.errno == 27:
            return "output limit: the code wrote more than the sandbox allows"
        message = str(exc)
        return _one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    except BaseException:  # a hostile __str__ or __repr__
        return "an exception whose message could not be read"


def _escape(text):
    return text.encode("unicode_escape").decode("ascii")


def _on_alarm(signum, frame):
    raise _TestTimeout()


def _worker(spec, cmd_r, res_w):
    """The forked worker: load the solution, then run the tests the harness asks for. Never returns."""
    _, setup, solution, entry_point, tests, test_s, load_s = spec[:7]
    me = os.getpid()
    sink = os.open(_OUTPUT, os.O_WRONLY | os.O_APPEND)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    os.close(sink)
    signal.signal(signal.SIGALRM, _on_alarm)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    error = ""
    started = time.perf_counter()
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, load_s)
            if setup:
                exec(compile(setup, "<setup>", "exec"), namespace)
            exec(compile(solution, "<solution>", "exec"), namespace)
        finally:  # an alarm due while this runs raises here, and is caught below: the timer is one-shot
            signal.setitimer(signal.ITIMER_REAL, 0)
        if entry_point and entry_point not in namespace:
            error = f"the solution does not define {entry_point}"
    except BaseException as exc:
        error = "while loading: " + _describe(exc, load_s)
    if os.getpid() != me:  # a process the solution forked fell through to here
        os._exit(0)
    os.write(res_w, f"load\t{'fail' if error else 'ok'}\t{time.perf_counter() - started:.6f}\t{_escape(error)}\n"
             .encode())
    if error:
        os._exit(0)
    pending = b""
    while True:
        while b"\n" not in pending:
            chunk = os.read(cmd_r, 256)
            if not chunk:
                os._exit(0)
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        index, nonce = line.decode().split("\t")
        started = time.perf_counter()
        try:
            try:
                signal.signal(signal.SIGALRM, _on_alarm)  # again: an earlier test may have replaced it
                signal.setitimer(signal.ITIMER_REAL, test_s)
                exec(compile(tests[int(index)], f"<test {index}>", "exec"), dict(namespace))
            finally:  # as above: a late alarm is caught below, and cannot fire twice
                signal.setitimer(signal.ITIMER_REAL, 0)
            verdict, error = "P", ""
        except BaseException as exc:
            verdict, error = "F", _describe(exc, test_s)
        if os.getpid() != me:
            os._exit(0)
        os.write(res_w, f"{nonce}\t{verdict}\t{time.perf_counter() - started:.6f}\t{_escape(error)}\n".encode())


class _Harness:
    def __init__(self, spec):
        self.spec = spec
        self.token = spec[0]
        self.tests = spec[4]
        self.test_s, self.load_s, self.budget_s, self.grace_s = spec[5], spec[6], spec[7], spec[8]
        self.out = os.dup(1)
        self.output = os.open(_OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.worker = None  # (pid, cmd_w, res_r); pid < 0 once wait_for has reaped it
        self.reaped_status = 0
        self.gone = "timeout"  # how the worker last failed to answer: timeout | closed | reaped
        self.deadline = time.monotonic() + self.budget_s

    def emit(self, *fields):
        os.write(self.out, ("\t".join([self.token, *map(str, fields)]) + "\n").encode())

    def start_worker(self):
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(self.out)
                os.close(self.output)
                os.close(cmd_w)
                os.close(res_r)
                _worker(self.spec, cmd_r, res_w)
            finally:
                os._exit(70)
        os.close(cmd_r)
        os.close(res_w)
        self.worker = (pid, cmd_w, res_r)
        answer = self.wait_for("load", min(self.load_s + self.grace_s, self.left()))
        if answer is None:
            return self.stop_worker("while loading: ", self.load_s), 0.0
        verdict, seconds, error = answer
        if verdict != "ok":
            self.stop_worker("", self.load_s)
            return error or "the solution could not be loaded", float(seconds)
        return "", float(seconds)

    def left(self):
        return max(0.0, self.deadline - time.monotonic())

    def wait_for(self, nonce, timeout):
        """The worker's answer quoting `nonce`, or None when it died or ran out of time."""
        pid, _, res_r = self.worker
        until = time.monotonic() + timeout
        pending = b""
        while True:
            now = time.monotonic()
            if now >= until:
                self.gone = "timeout"
                return None
            ready, _, _ = select.select([res_r], [], [], min(0.05, until - now))
            if ready:
                chunk = os.read(res_r, 65536)
                if not chunk:
                    self.gone = "closed"
                    return None
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()[-_LINE_LIMIT:]
                for raw in lines:
                    fields = raw[:_LINE_LIMIT].decode("ascii", "replace").split("\t")
                    if len(fields) == 4 and fields[0] == nonce and fields[1] in ("P", "F", "ok", "fail"):
                        try:
                            float(fields[2])
                        except ValueError:
                            continue
                        return fields[1], fields[2], fields[3]
            else:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.worker = (-pid, *self.worker[1:])  # reaped: stop_worker must not wait again
                    self.reaped_status, self.gone = status, "reaped"
                    return None

    def stop_worker(self, context, limit):
        """Kill the worker (if alive), reap it, and say in one line why it stopped."""
        pid, cmd_w, res_r = self.worker
        self.worker = None
        os.close(cmd_w)
        os.close(res_r)
        gone, self.gone = self.gone, "timeout"
        if pid < 0:  # already reaped by wait_for
            status = self.reaped_status
        else:
            done, status = os.waitpid(pid, os.WNOHANG)
            until = time.monotonic() + 0.5
            while not done and gone == "closed" and time.monotonic() < until:  # it is exiting: a moment
                time.sleep(0.002)
                done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                if gone == "closed":
                    return _escape(context + "the code closed the harness's result channel")
                return _escape(context + f"timeout: ran over {limit:g} s (killed)")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            what = {"SIGXCPU": "the CPU limit killed it", "SIGSEGV": "the interpreter crashed",
                    "SIGABRT": "the interpreter aborted", "SIGBUS": "the interpreter crashed"}.get(name, "it was killed")
            return _escape(context + f"{what} ({name})")
        return _escape(context + f"the process exited with code {os.WEXITSTATUS(status)} (os._exit or a crash)")

    def run(self):
        self.emit("start")
        for i in range(len(self.tests)):
            if self.left() <= 0:
                self.emit("test", i, "F", "0", _escape("not run: the solution's time budget ran out"))
                continue
            if self.worker is not None and (left_behind := self.sweep_others()):
                self.stop_worker("", 0)  # a test left processes behind: the next one gets a fresh worker
                _wait_gone(left_behind)  # their zombies, now pid 1's, reaped: no process slot still held
            if self.worker is None:
                load_error, seconds = self.start_worker()
                self.emit("load", "fail" if load_error else "ok", f"{seconds:.6f}", load_error)
                if load_error:
                    for j in range(i, len(self.tests)):
                        self.emit("test", j, "F", "0", load_error)
                    break
                self.sweep_others()  # what the solution forked while loading
            os.ftruncate(self.output, 0)
            nonce = os.urandom(8).hex()
            started = time.monotonic()
            try:
                os.write(self.worker[1], f"{i}\t{nonce}\n".encode())
            except OSError:
                pass  # the worker closed its end: wait_for sees it gone
            answer = self.wait_for(nonce, min(self.test_s + self.grace_s, self.left()))
            seconds = time.monotonic() - started
            if answer is None:
                self.emit("test", i, "F", f"{seconds:.6f}", self.stop_worker("", self.test_s))
            else:
                self.emit("test", i, answer[0], answer[1], answer[2])
        if self.worker is not None:
            self.stop_worker("", 0)
        self.sweep_others()
        spent = os.times()  # this process and every worker it reaped: what the run cost inside the sandbox
        self.emit("end", f"{spent.user + spent.system + spent.children_user + spent.children_system:.4f}")

    def sweep_others(self):
        """Kill every process of the sandbox but pid 1, this one and the worker; the pids found (killed)."""
        keep = {1, os.getpid(), os.getppid()}
        if self.worker is not None:
            keep.add(abs(self.worker[0]))
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in keep:
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    continue
                found.append(name)
        until = time.monotonic() + 1.0
        pending = found
        while pending and time.monotonic() < until:
            pending = [p for p in pending if _alive(p)]
            if pending:
                time.sleep(0.002)
        return found


def _wait_gone(pids, seconds=2.0):
    """Wait, at most `seconds`, until none of `pids` is in /proc any more (reaped, not only dead)."""
    until = time.monotonic() + seconds
    while pids and time.monotonic() < until:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if pids:
            time.sleep(0.002)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _harness_main(spec):
    try:
        import ctypes  # already loaded by the sandbox's boot: free

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: /proc/<this>/fd is closed to the worker
    except Exception:
        pass  # defence in depth only: the worker holds no descriptor of stdout anyway
    _Harness(spec).run()


_harness_main(SPEC)  # noqa: F821 -- SPEC is the line code_tests.py puts before this file
sys.exit(0)
