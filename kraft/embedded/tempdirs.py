"""Temporary data dirs of `Cluster`s, and the removal of those whose owner died without
removing its own (SIGKILL skips every cleanup), so killed test runs do not fill the disk.

Each dir is `$TMPDIR/kraft-cluster-<pid>-<random>/` and holds `owner.json`::

    {"pid": 4242, "start_time": 123456, "pid_ns": "pid:[4026531836]", "boot_id": "..."}

`start_time` is field 22 of /proc/<pid>/stat (clock ticks since boot), so a recycled pid is
not taken for the owner. A dir is removed only when its owner is provably gone: same boot and
pid namespace as ours (a /tmp shared with a container holds dirs of owners whose pids mean
nothing here), and no process with that pid and start time. Anything unreadable is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "kraft-cluster-"
OWNER_FILE = "owner.json"


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _identity(pid: int) -> dict[str, object]:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        boot_id, pid_ns = "", ""
    return {"pid": pid, "start_time": _start_time(pid), "pid_ns": pid_ns, "boot_id": boot_id}


def make() -> Path:
    """A new temporary data dir owned by this process."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    (path / OWNER_FILE).write_text(json.dumps(_identity(os.getpid())))
    return path


def owner_gone(path: Path) -> bool:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    here = _identity(os.getpid())
    if not here["boot_id"] or owner.get("pid_ns") != here["pid_ns"]:
        return False
    if owner.get("boot_id") != here["boot_id"]:
        return True  # the machine rebooted since
    return owner.get("start_time") is None or _start_time(pid) != owner["start_time"]


def remove_orphaned(parent: str | None = None) -> list[Path]:
    """Remove the temporary data dirs (in `parent`, default the temp dir) whose owner is gone;
    the removed paths."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if path.is_dir() and owner_gone(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
