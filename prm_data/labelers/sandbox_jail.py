"""The bubblewrap command line that isolates one sandbox run at the operating-system level.

Each run is a fresh `bwrap` (https://github.com/containers/bubblewrap, Debian
package `bubblewrap`) whose child:

- lives in its own mount, pid, network, IPC, UTS and cgroup namespaces, and its
  own user namespace that maps one unprivileged uid (65534 by default) and
  allows no nested user namespace;
- sees a root made of: /usr, the interpreter's prefix and its site-packages,
  all read-only; a fresh /proc for its own pid namespace; a minimal read-only
  /dev (null, zero, random, urandom, tty); and its working folder /tmp, a
  private size-limited tmpfs that exists only for this run. No /etc, no /home,
  no /root, no host /tmp, no other process;
- has an empty environment apart from the few variables in `CHILD_ENV`;
- has no network but its own loopback.

Two ways to get there. As root (the usual container case), bwrap runs
privileged without a user namespace, so that it can bind the interpreter from
folders only root may walk (pyenv under /root); it keeps only CAP_SETUID,
CAP_SETGID and CAP_CHOWN, and `sandbox_boot` drops to the unprivileged uid and
into a new user namespace before it reads the code. As any other user, bwrap
makes the user namespace itself (`--unshare-user --disable-userns`) and the code
runs as that user, unprivileged already.
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

BOOT_SOURCE = (Path(__file__).with_name("sandbox_boot.py")).read_text(encoding="utf-8")
WORKDIR = "/tmp"
CHILD_ENV = {"PATH": "/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8",
             "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@lru_cache(maxsize=1)
def interpreter() -> str:
    """The real interpreter binary (a venv's `python` is a symlink to it)."""
    return os.path.realpath(sys.executable)


@lru_cache(maxsize=1)
def readonly_paths() -> tuple[str, ...]:
    """Host folders the child sees read-only: /usr, the interpreter's prefix, its site-packages."""
    wanted = ["/usr", os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(interpreter()))]
    wanted += [os.path.realpath(p) for p in site.getsitepackages()]
    wanted += [os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")]
    out: list[str] = []
    for path in sorted(set(wanted), key=len):
        if os.path.isdir(path) and path != "/" and not any(path.startswith(p + os.sep) for p in out):
            out.append(path)
    return tuple(out)


def site_packages() -> list[str]:
    """The parent's package folders, put on the child's sys.path (it runs with -S: no .pth files)."""
    paths = [os.path.realpath(p) for p in site.getsitepackages()]
    paths += [os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")]
    return list(dict.fromkeys(p for p in paths if os.path.isdir(p)))


def privileged() -> bool:
    """True when prm-data runs as root: bwrap runs without a user namespace, the boot drops to `run_as_uid`."""
    return os.geteuid() == 0


def command(bwrap: str, *, tmp_bytes: int, run_as_uid: int, limits: dict[str, int]) -> list[str]:
    """The full argv of one sandbox run; the code is sent on its stdin."""
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
    if privileged():
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_CHOWN"]
    else:
        args += ["--unshare-user", "--disable-userns", "--uid", str(run_as_uid), "--gid", str(run_as_uid)]
    for name, value in CHILD_ENV.items():
        args += ["--setenv", name, value]
    # the private folder first: a package folder under /tmp (a venv made there) is bound on top of it
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--size", str(tmp_bytes), "--tmpfs", WORKDIR]
    made: set[str] = {WORKDIR}
    for path in readonly_paths():
        for parent in reversed(Path(path).parents[:-1]):  # bwrap would make them 0700: unwalkable
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", path, path]
    for link in TOP_LEVEL_LINKS:  # merged-/usr systems: /lib -> usr/lib; otherwise real folders
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link) and link not in readonly_paths():
            args += ["--ro-bind", link, link]
    args += ["--chdir", WORKDIR, "--remount-ro", "/"]
    settings = [WORKDIR, str(run_as_uid) if privileged() else "-",
                ",".join(f"{name}={value}" for name, value in limits.items()), os.pathsep.join(site_packages())]
    return [*args, "--", interpreter(), "-I", "-S", "-B", "-c", BOOT_SOURCE, *settings]
