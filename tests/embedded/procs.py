"""What the embedded tests ask of processes and ports: has a pid exited, a free port layout for
`kraft up`."""

from __future__ import annotations

import socket


def gone(pid: int) -> bool:
    """The process has exited: no /proc entry, or a zombie not yet reaped by its (new)
    parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def up_base_port(nodes: int = 1) -> int:
    """A port P with P+i, P+100+i, P+200+i and P+300+i free for i < `nodes` (`kraft up`'s
    layout); the ports are free when checked, as for any free-port choice."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 300 + nodes > 65535:
            continue
        try:
            for offset in (0, 100, 200, 300):
                for i in range(nodes):
                    if offset == 0 and i == 0:
                        continue
                    with socket.socket() as probe:
                        probe.bind(("127.0.0.1", base + offset + i))
        except OSError:
            continue
        return base
    raise AssertionError("no free port layout found")
