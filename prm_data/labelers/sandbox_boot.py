"""The first Python the sandboxed interpreter runs, before it reads the untrusted code.

This file is not imported: `sandbox_jail` passes its text to `python -I -S -c`
inside the bubblewrap namespaces. It runs with no environment, with its
settings as arguments (working folder, uid to drop to or `-`, `NAME=value`
limits joined by commas, site-packages joined by os.pathsep: no json import,
which alone costs a fresh interpreter tens of milliseconds) and the untrusted
code on stdin. In order:

1. when bubblewrap ran privileged (prm-data runs as root), drop to the
   unprivileged uid/gid (`drop_to`) and enter a fresh user namespace that maps
   only that uid; forbid nested user namespaces; drop every capability and the
   bounding set;
2. set the resource limits (after the user namespace exists, so the process
   count is charged to this run alone, not to every run sharing the uid);
3. write the code to `main.py` in the private working folder, point stdin at
   /dev/null, put the interpreter's site-packages on sys.path and run it.

Any failure before the code runs exits with SETUP_FAILED and a line starting
with `sandbox setup failed:` on stderr; nothing is run half-isolated.
"""

import ctypes
import os
import resource
import sys

SETUP_FAILED = 125
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def _drop_privileges(libc, uid, gid, workdir):
    """From root (holding CAP_SETUID/SETGID/CHOWN only) to `uid` in a user namespace of its own."""
    os.chmod(workdir, 0o700)
    os.chown(workdir, uid, gid)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # the kernel clears every capability here
    _check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")  # to write our own id maps
    _check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    # A new user namespace hands its creator every capability inside it: give them all back,
    # and make sure the code cannot create another one to get them again.
    _write("/proc/sys/user/max_user_namespaces", "0")
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _check(libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), (_CapData * 2)()), "capset")


def _set_limits(limits):
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def main():
    workdir, drop_to, limits, site_packages = sys.argv[1:5]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if drop_to != "-":
            _drop_privileges(libc, int(drop_to), int(drop_to), workdir)
        _check(libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        if os.getuid() == 0 or os.geteuid() == 0:
            raise OSError("still uid 0 inside the sandbox")
        _set_limits({name: int(value) for name, value in (item.split("=") for item in limits.split(","))})
        code = sys.stdin.buffer.read()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        path = os.path.join(workdir, "main.py")
        with open(path, "wb") as fh:
            fh.write(code)
        sys.path[:0] = [workdir]
        sys.path.extend(p for p in site_packages.split(os.pathsep) if p)
        sys.argv = [path]
    except BaseException as exc:  # never run the code half-isolated
        sys.stderr.write(f"sandbox setup failed: {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)
    return path, code


_path, _code = main()
del main, _drop_privileges, _set_limits, _check, _write, _CapHeader, _CapData
exec(compile(_code, _path, "exec"), {"__name__": "__main__", "__file__": _path, "__builtins__": __builtins__})
