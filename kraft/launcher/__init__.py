"""Local clusters of `kraft serve` child processes on 127.0.0.1: the one launcher behind
`kraft up`, the process tests and the benchmarks.

Layout of a cluster's root directory (reused by the next launch on the same root, data
included)::

    ROOT/cluster.id, ROOT/cluster.secret   generated on the first launch, kept after
    ROOT/node-<id>/server.properties       the node's config (see `write_configs`)
    ROOT/node-<id>/data/                   its log dir
    ROOT/node-<id>/node.log                its log output (stderr), appended to across starts

Every node runs in a session of its own, so a terminal's Ctrl-C reaches the launcher only (which
stops the nodes) and a kill -9 hits that one node. Nodes are started as
`python -E -P -c <bootstrap> <root> kraft.cli serve --config ...`: neither the caller's
working directory nor `PYTHONPATH` is on the child's path, and the bootstrap puts first the
directory that holds the `kraft` package this launcher was imported from (and checks that
this is the one it got), so a node runs the same kraft as its launcher.

Everything here is blocking (subprocesses, plain sockets, no event loop), so it can be used from
threads, pytest and scripts alike; asyncio code calls it through `asyncio.to_thread`.
"""

from kraft.launcher.cluster import LocalCluster
from kraft.launcher.configs import NodeSpec, append_config, free_ports, plan, write_configs
from kraft.launcher.probe import (
    METADATA_TOPIC,
    POLL_INTERVAL_S,
    REQUEST_TIMEOUT_S,
    TRANSIENT,
    describe_quorum_request,
    poll_until,
    request,
)
from kraft.launcher.process import (
    KRAFT_ROOT,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    LaunchError,
    NodeProcess,
    node_command,
)

__all__ = [
    "KRAFT_ROOT",
    "METADATA_TOPIC",
    "POLL_INTERVAL_S",
    "READY_TIMEOUT_S",
    "REQUEST_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "TRANSIENT",
    "LaunchError",
    "LocalCluster",
    "NodeProcess",
    "NodeSpec",
    "append_config",
    "describe_quorum_request",
    "free_ports",
    "node_command",
    "plan",
    "poll_until",
    "request",
    "write_configs",
]
