"""`kraft up`: a whole local cluster of combined nodes (plus, with `--brokers`, broker-only
nodes) as child processes on 127.0.0.1, through `kraft.launcher`.

Layout of the data dir (reused by the next `kraft up` on the same dir, data included): the
launcher's (`kraft.launcher`), plus DIR/cluster.json, written once the cluster is ready and
removed on stop.

Ports from --base-port P: node i serves Kafka on P+i-1, its controller listener on P+100+i-1
its Raft transport on P+200+i-1 and its HTTP admin API on P+300+i-1 (printed, and in
cluster.json). Broker-only nodes are numbered after the combined ones
and have only the Kafka port.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType

from kraft.launcher import LaunchError, LocalCluster


class _Interrupted(Exception):
    pass


def _write_cluster_json(cluster: LocalCluster) -> str:
    path = os.path.join(cluster.root, "cluster.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cluster.info(), f, indent=2)
    os.replace(tmp, path)
    return path


def run_up(nodes: int, data_dir: str, base_port: int, brokers: int = 0) -> int:
    """Start the cluster, print where it is, and stop it on SIGINT / SIGTERM."""
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal starting
        stop.set()
        if starting:  # once: the start's own clean stop must not be interrupted again
            starting = False
            raise _Interrupted

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    cluster = LocalCluster(data_dir, nodes, brokers, base_port=base_port)
    try:
        try:
            cluster.start()
        except LaunchError as e:
            print(f"kraft up: the cluster did not become ready: {e}", file=sys.stderr)
            return 1
        except _Interrupted:
            return 130
        finally:
            starting = False
        if stop.is_set():
            return 130
        path = _write_cluster_json(cluster)
        print(
            f"kraft cluster ready: {nodes} node(s)"
            + (f", {brokers} broker-only" if brokers else "")
        )
        print(f"bootstrap servers: {cluster.bootstrap_servers}")
        for node_id, url in cluster.admin_urls.items():
            print(f"admin API of node {node_id}: {url}/v1 (dashboard: {url}/)")
        print(f"cluster file: {path}", flush=True)
        stop.wait()
        print("stopping the cluster", flush=True)
        return 0
    finally:
        try:
            os.unlink(os.path.join(cluster.root, "cluster.json"))
        except FileNotFoundError:
            pass
        # A second Ctrl-C while stopping must not leave nodes behind.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        cluster.stop()
