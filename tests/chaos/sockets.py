"""The kernel's view of TCP connections on this host: which process holds an established
connection to which port. Proof, independent of the proxy's own bookkeeping (ours or a real
Toxiproxy), that a connection went where it should."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Connection:
    pid: int
    local_port: int
    remote_port: int


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def established(pids: list[int]) -> list[Connection]:
    """Established TCP connections held by these processes."""
    owner = {inode: pid for pid in pids for inode in socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                state, inode = fields[3], int(fields[9])
                if state == "01" and inode in owner:
                    found.append(
                        Connection(
                            owner[inode],
                            int(fields[1].rsplit(":", 1)[1], 16),
                            int(fields[2].rsplit(":", 1)[1], 16),
                        )
                    )
    return found
