"""Real `kraft serve` processes on 127.0.0.1 for end-to-end tests with real clients: one
single-node cluster each, started through `kraft.launcher`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kraft.launcher import NodeProcess as LauncherNode
from kraft.launcher import NodeSpec, free_ports
from kraft.storage import random_uuid


class NodeProcess(LauncherNode):
    """One combined node (broker + its own single-voter controller) with its data in
    `data_dir`; the data survives restarts. `extra` keys are appended to its config."""

    def __init__(self, data_dir: Path, node_id: int = 1, extra: dict[str, str] | None = None):
        port, controller_port = free_ports(2)
        super().__init__(NodeSpec(node_id, port, controller_port, 0, str(data_dir)))
        self.data_dir = data_dir
        self.port = port
        self.extra = extra or {}
        self.config_path = Path(self.spec.config_path)
        # As the launcher's configs: a node given cluster.id formats its empty dirs with it.
        self.cluster_id = random_uuid()

    def write_config(self) -> None:
        props = {
            "node.id": str(self.node_id),
            "cluster.id": self.cluster_id,
            "process.roles": "broker,controller",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.voters": f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            **self.extra,
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def start(self, timeout: float = 30.0) -> None:  # type: ignore[override]
        """Write the config, start, and wait until the node is ready (killed if not)."""
        self.write_config()
        super().start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 20.0) -> int | None:
        return super().stop(timeout)

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path)
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("node"))
    n.start()
    try:
        yield n
    finally:
        n.stop()
