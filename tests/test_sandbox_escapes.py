"""Hostile code against the sandbox's isolation: every probe records what the child saw.

Each test runs an attack through the real `run_python` and asserts on the child's own
observations (the bytes it read, the errno the kernel gave it), then checks from this
process that nothing changed outside. The parent of every run (this test process)
holds HF_TOKEN and OPENAI_API_KEY set to MARKER, as a real labeling run does.

A folder outside the sandbox (`outside`) is made world-writable and its secret file
world-readable, so that only the isolation — not file permissions — can stop an
access to it.
"""

from __future__ import annotations

import ctypes
import errno as E
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from sandbox_probes import DENIED, kernel_refused, probe

REPO = Path(__file__).resolve().parents[1]
MARKER = "prm-secret-marker-7f3a9c1e5b"


@pytest.fixture(autouse=True)
def parent_secrets(monkeypatch):
    """The sandbox's parent (this process) holds the tokens a labeling run holds."""
    monkeypatch.setenv("HF_TOKEN", MARKER)
    monkeypatch.setenv("OPENAI_API_KEY", MARKER)
    monkeypatch.setenv("PRM_PROBE_SENTINEL", "inherited-from-parent")


@pytest.fixture()
def outside(tmp_path):
    """A world-writable folder outside the sandbox holding a world-readable secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(MARKER)
    os.chmod(folder, 0o777)
    os.chmod(folder / "secret.txt", 0o644)
    for parent in folder.parents:  # let any uid walk down to it
        if parent == Path("/"):
            break
        if str(parent).startswith(str(tmp_path.parents[1])):
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    return folder


def no_marker(seen: dict, result) -> None:
    text = json.dumps(seen) + result.stdout + result.stderr
    assert MARKER not in text
    assert "inherited-from-parent" not in text


def test_the_dir_fd_escape_of_issue_12_reads_and_writes_nothing_outside(outside):
    """The exact exploit: a descriptor on its folder, chdir deeper, `../`*depth + path with dir_fd."""
    body = f"""
depth = len(os.getcwd().strip('/').split('/'))
fd = os.open('.', os.O_RDONLY)
os.makedirs('d/' * depth)
os.chdir('d/' * depth)
up = '../' * depth
def read_at(rel):
    return os.read(os.open(up + rel, os.O_RDONLY, dir_fd=fd), 100000)
attempt('ppid_environ', lambda: read_at(f'proc/{{os.getppid()}}/environ'))
attempt('parent_environ', lambda: read_at('proc/{os.getpid()}/environ'))
attempt('read_outside', lambda: read_at({str(outside / 'secret.txt')[1:]!r}))
attempt('write_outside', lambda: os.write(os.open(up + {str(outside / 'escaped.txt')[1:]!r},
                                                  os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), b'escaped'))
"""
    seen, result = probe(body)
    no_marker(seen, result)
    for name in ("parent_environ", "read_outside", "write_outside"):
        assert kernel_refused(seen[name]), (name, seen[name])
    # its own parent is bubblewrap's init inside the sandbox: root's (EACCES) when prm-data runs as
    # root; the caller's otherwise, with the empty environment prm-data starts bubblewrap with
    assert kernel_refused(seen["ppid_environ"]) or seen["ppid_environ"] == {"got": ""}, seen["ppid_environ"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_no_process_the_child_can_see_has_the_parents_environment():
    body = """
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
attempt('pids', lambda: pids)
attempt('self_environ', lambda: open('/proc/self/environ', 'rb').read())
for pid in pids:
    attempt(f'environ_{pid}', lambda pid=pid: open(f'/proc/{pid}/environ', 'rb').read())
attempt('os_environ', lambda: dict(os.environ))
"""
    seen, result = probe(body)
    no_marker(seen, result)
    own = seen["self_environ"]["got"]
    assert "HF_TOKEN" not in own and "OPENAI_API_KEY" not in own and "PRM_PROBE_SENTINEL" not in own
    assert set(seen["os_environ"]["got"]) <= {"PATH", "HOME", "PWD", "TMPDIR", "LANG", "LC_ALL", "PYTHONHASHSEED",
                                              "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    # its own pid namespace: a handful of processes, none of them this test's
    assert len(seen["pids"]["got"]) <= 4 and os.getpid() not in seen["pids"]["got"]


def test_symlinks_and_hard_links_lead_nowhere_outside(outside):
    python_file = os.path.realpath(sys.executable)
    body = f"""
os.symlink({str(outside / 'secret.txt')!r}, 'to_secret')
attempt('read_via_symlink', lambda: open('to_secret').read())
os.symlink({str(outside)!r}, 'to_outside')
attempt('write_via_symlinked_dir', lambda: open('to_outside/escaped.txt', 'w').write('escaped'))
os.symlink('/proc/{os.getpid()}/environ', 'to_parent_environ')
attempt('read_parent_environ_via_symlink', lambda: open('to_parent_environ', 'rb').read())
attempt('hard_link_secret', lambda: os.link({str(outside / 'secret.txt')!r}, 'secret_link'))
attempt('hard_link_interpreter', lambda: os.link({python_file!r}, 'python_link'))
"""
    seen, result = probe(body)
    no_marker(seen, result)
    for name in ("read_via_symlink", "write_via_symlinked_dir", "read_parent_environ_via_symlink",
                 "hard_link_secret"):
        assert kernel_refused(seen[name]), (name, seen[name])
    # the interpreter is visible, but on a read-only mount of another file system
    assert kernel_refused(seen["hard_link_interpreter"], {E.EXDEV, E.EPERM, E.EROFS}), seen["hard_link_interpreter"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_setxattr_changes_nothing_outside(outside):
    try:
        os.setxattr(outside, "user.prm_control", b"1")  # the folder's file system takes user xattrs
    except OSError as exc:
        pytest.skip(f"user xattrs unsupported here: {exc}")
    stdlib = os.path.dirname(os.__file__)
    body = f"""
attempt('setxattr_outside', lambda: os.setxattr({str(outside)!r}, 'user.prm_probe', b'escaped'))
attempt('setxattr_stdlib', lambda: os.setxattr({stdlib!r}, 'user.prm_probe', b'escaped'))
attempt('setxattr_root', lambda: os.setxattr('/', 'user.prm_probe', b'escaped'))
"""
    seen, result = probe(body)
    assert kernel_refused(seen["setxattr_outside"]), seen["setxattr_outside"]
    assert kernel_refused(seen["setxattr_stdlib"]), seen["setxattr_stdlib"]
    assert kernel_refused(seen["setxattr_root"]), seen["setxattr_root"]
    for folder in (outside, Path(stdlib)):
        with pytest.raises(OSError) as missing:
            os.getxattr(folder, "user.prm_probe")
        assert missing.value.errno in (E.ENODATA, E.ENOTSUP)


def test_the_child_can_write_only_into_its_own_private_folder(outside, tmp_path):
    host_tmp = Path("/tmp") / f"prm_probe_{os.getpid()}_{tmp_path.name}.txt"
    targets = {
        "outside": outside / "escaped.txt",
        "repo": REPO / "sandbox_escape.txt",
        "root": Path("/prm_sandbox_escape.txt"),
        "usr": Path("/usr/prm_sandbox_escape.txt"),
        "stdlib": Path(os.path.dirname(os.__file__)) / "prm_sandbox_escape.py",
        "dev_shm": Path("/dev/shm/prm_sandbox_escape"),
        "var_tmp": Path("/var/tmp/prm_sandbox_escape"),
        "proc": Path("/proc/prm_sandbox_escape"),
    }
    body = "".join(f"attempt({name!r}, lambda: open({str(path)!r}, 'w').write('escaped'))\n"
                   for name, path in targets.items())
    body += f"attempt('mkdir_outside', lambda: os.makedirs({str(REPO / 'made' / 'deeper')!r}))\n"
    # the host's /tmp is not there: a folder made at the same path lands in the run's own tmpfs
    body += f"attempt('private_mkdir', lambda: os.makedirs({str(outside / 'made')!r}))\n"
    body += f"attempt('private_tmp', lambda: open({str(host_tmp)!r}, 'w').write('private'))\n"
    body += "attempt('own_folder', lambda: (open('notes.txt', 'w').write('kept'), open('notes.txt').read())[1])\n"
    try:
        seen, result = probe(body)
        for name in (*targets, "mkdir_outside"):
            assert kernel_refused(seen[name]), (name, seen[name])
        assert seen["own_folder"] == {"got": "kept"}
        # /tmp inside is the run's own tmpfs: the write lands there, never in the host's /tmp
        assert seen["private_tmp"] == {"got": len("private")} and seen["private_mkdir"] == {"got": None}
        for path in [*targets.values(), host_tmp, REPO / "made"]:
            assert not path.exists(), path
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    finally:
        for path in [*targets.values(), host_tmp]:
            if path.is_file() and path.parent != Path("/proc"):
                path.unlink()


def test_etc_shadow_and_credential_files_in_the_home_folder_are_not_there(tmp_path, monkeypatch):
    home = tmp_path / "home"
    creds = {".npmrc": f"//registry.npmjs.org/:_authToken={MARKER}\n",
             ".cargo/credentials.toml": f'[registry]\ntoken = "{MARKER}"\n',
             ".prefect/profiles.toml": f'[profiles.default]\nPREFECT_API_KEY = "{MARKER}"\n',
             ".netrc": f"machine example.org login me password {MARKER}\n",
             ".cache/huggingface/token": MARKER}
    for rel, text in creds.items():
        path = home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o644)
    for folder in [home, *home.rglob("*")]:
        if folder.is_dir():
            os.chmod(folder, 0o755)
    monkeypatch.setenv("HOME", str(home))
    assert Path("/etc/shadow").exists()  # the host has one (root-only): the child must not see it
    paths = {"shadow": "/etc/shadow", **{rel: str(home / rel) for rel in creds}}
    body = "".join(f"attempt({name!r}, lambda: open({p!r}).read())\n" for name, p in paths.items())
    body += "attempt('tilde_npmrc', lambda: open(os.path.expanduser('~/.npmrc')).read())\n"
    seen, result = probe(body)
    no_marker(seen, result)
    assert "root:" not in json.dumps(seen)
    for name in (*paths, "tilde_npmrc"):
        assert kernel_refused(seen[name]), (name, seen[name])


class Listeners:
    """TCP and UDP on 127.0.0.1, a Unix socket in a world-writable folder and an abstract
    Unix socket, each recording every connection or datagram it gets."""

    def __init__(self, folder: Path):
        self.seen: list[str] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_path = str(folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen()
        self.abstract_name = f"\0prm-probe-{os.getpid()}-{id(self)}"
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind(self.abstract_name)
        self.abstract.listen()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, args=(s, n), daemon=True)
                        for s, n in ((self.tcp, "tcp"), (self.unix, "unix"), (self.abstract, "abstract"))]
        self.threads.append(threading.Thread(target=self._receive, daemon=True))
        for t in self.threads:
            t.start()

    def _accept(self, server, name):
        server.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            self.seen.append(name)
            conn.close()

    def _receive(self):
        self.udp.settimeout(0.05)
        while not self.stop.is_set():
            try:
                self.udp.recvfrom(100)
            except (TimeoutError, OSError):
                continue
            self.seen.append("udp")

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.close()


@pytest.fixture()
def listeners(outside):
    ls = Listeners(outside)
    yield ls
    ls.close()


def test_the_listeners_are_reachable_from_outside_the_sandbox(listeners):
    """Control: every listener does record a connection made from this process."""
    socket.create_connection(("127.0.0.1", listeners.tcp.getsockname()[1]), timeout=2).close()
    for address in (listeners.unix_path, listeners.abstract_name):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address)
        s.close()
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", listeners.udp.getsockname())
    deadline = __import__("time").monotonic() + 5
    while len(listeners.seen) < 4 and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.02)
    assert sorted(listeners.seen) == ["abstract", "tcp", "udp", "unix"]


def test_no_socket_reaches_anything_outside(listeners):
    tcp_port = listeners.tcp.getsockname()[1]
    udp_port = listeners.udp.getsockname()[1]
    body = f"""
import _socket, socket
def raw_tcp():
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(('127.0.0.1', {tcp_port}))
    return 'connected'
def unix(address):
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.connect(address)
    return 'connected'
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b'leak', ('127.0.0.1', {udp_port}))
def external():
    s = socket.socket()
    s.settimeout(3)
    s.connect(('192.0.2.1', 80))  # TEST-NET-1: a route is all it would need
    return 'connected'
attempt('raw_tcp', raw_tcp)
attempt('tcp', lambda: socket.create_connection(('127.0.0.1', {tcp_port}), timeout=3) and 'connected')
attempt('unix_path', lambda: unix({listeners.unix_path!r}))
attempt('unix_abstract', lambda: unix({listeners.abstract_name!r}))
attempt('udp', udp)
attempt('external', external)
attempt('interfaces', lambda: [name for _, name in socket.if_nameindex()])
"""
    seen, _ = probe(body)
    refused = {E.ECONNREFUSED, E.ENETUNREACH, E.EHOSTUNREACH}
    assert kernel_refused(seen["raw_tcp"], refused), seen["raw_tcp"]
    assert kernel_refused(seen["tcp"], refused), seen["tcp"]
    assert kernel_refused(seen["unix_path"], {E.ENOENT}), seen["unix_path"]
    assert kernel_refused(seen["unix_abstract"], {E.ECONNREFUSED}), seen["unix_abstract"]
    assert kernel_refused(seen["external"], {E.ENETUNREACH, E.EHOSTUNREACH}), seen["external"]
    assert seen["interfaces"] == {"got": ["lo"]}  # its own network namespace: only a loopback
    __import__("time").sleep(0.3)
    assert listeners.seen == []  # (a UDP datagram, if sent, went to the child's own loopback)


CTYPES_PRELUDE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def call(fn, *args):
    ret = fn(*args)
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret
"""


def test_ptrace_and_process_vm_readv_cannot_reach_the_parent():
    secret = ctypes.create_string_buffer(MARKER.encode())
    address, size = ctypes.addressof(secret), len(MARKER)
    body = CTYPES_PRELUDE + f"""
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
def vm_read(pid):
    buf = ctypes.create_string_buffer({size})
    local, remote = iovec(ctypes.addressof(buf), {size}), iovec({address}, {size})
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    call(libc.process_vm_readv, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return buf.raw
attempt('ptrace_attach_parent', lambda: call(libc.ptrace, 16, {os.getpid()}, None, None))
attempt('ptrace_attach_ppid', lambda: call(libc.ptrace, 16, os.getppid(), None, None))
attempt('vm_read_parent', lambda: vm_read({os.getpid()}))
attempt('vm_read_ppid', lambda: vm_read(os.getppid()))
"""
    seen, result = probe(body)
    no_marker(seen, result)
    # the parent's pid does not exist in the child's pid namespace; its own init is not its to trace
    for name in ("ptrace_attach_parent", "vm_read_parent"):
        assert kernel_refused(seen[name], {E.ESRCH, E.EPERM}), (name, seen[name])
    if os.geteuid() == 0:  # bubblewrap's init runs as root, the code as run_as_uid
        for name in ("ptrace_attach_ppid", "vm_read_ppid"):
            assert kernel_refused(seen[name], {E.EPERM, E.ESRCH}), (name, seen[name])
    # (as another user, init and code share that uid inside the sandbox: tracing init reaches
    # nothing the code cannot already reach — it has no capability and the same namespaces)
    assert secret.value == MARKER.encode()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="system call numbers below are x86-64's")
def test_libc_called_through_ctypes_gets_no_further(outside):
    body = CTYPES_PRELUDE + f"""
libc.syscall.restype = ctypes.c_long
SYS_open, SYS_openat, SYS_unshare, AT_FDCWD = 2, 257, 272, -100  # x86-64 numbers
attempt('open_shadow', lambda: call(libc.syscall, SYS_open, b'/etc/shadow', 0))
attempt('openat_shadow', lambda: call(libc.syscall, SYS_openat, AT_FDCWD, b'/etc/shadow', 0))
attempt('syscall_unshare_user', lambda: call(libc.syscall, SYS_unshare, 0x10000000))
attempt('openat_outside', lambda: call(libc.syscall, SYS_openat, AT_FDCWD, {str(outside / 'secret.txt').encode()!r}, 0))
attempt('open_parent_environ', lambda: call(libc.open, b'/proc/{os.getpid()}/environ', 0))
attempt('unshare_user', lambda: call(libc.unshare, 0x10000000))
attempt('unshare_mount', lambda: call(libc.unshare, 0x00020000))
attempt('unshare_net', lambda: call(libc.unshare, 0x40000000))
attempt('setuid_root', lambda: call(libc.setuid, 0))
attempt('mount_tmpfs', lambda: call(libc.mount, b'none', b'/tmp', b'tmpfs', 0, None))
attempt('chroot', lambda: call(libc.chroot, b'/tmp'))
attempt('system_touch', lambda: libc.system({f"touch {outside / 'escaped.txt'}".encode()!r}))
"""
    seen, result = probe(body)
    no_marker(seen, result)
    for name in ("open_shadow", "openat_shadow", "openat_outside", "open_parent_environ"):
        assert kernel_refused(seen[name], {E.ENOENT, E.EACCES}), (name, seen[name])
    # no capability to make new namespaces or mounts, to change uid or root
    for name in ("unshare_mount", "unshare_net", "mount_tmpfs", "chroot"):
        assert kernel_refused(seen[name], {E.EPERM}), (name, seen[name])
    # uid 0 is not even mapped in its user namespace
    assert kernel_refused(seen["setuid_root"], {E.EPERM, E.EINVAL}), seen["setuid_root"]
    # and no nested user namespace, which would hand those capabilities back
    for name in ("unshare_user", "syscall_unshare_user"):
        assert kernel_refused(seen[name], {E.EPERM, E.ENOSPC, E.EUSERS}), (name, seen[name])
    assert seen["system_touch"].get("got", 0) != 0  # the shell ran, and touch failed
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
