"""A 3-node cluster shared by the CLI tests of a module, and a runner for the CLI as a
subprocess (`python -m kraft.cli ...`), so argument parsing and exit codes are the real ones."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from kraft.launcher import LocalCluster

# A new group's first rebalance starts at once; a small offsets topic is quick to create.
CLUSTER_CONFIG = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        assert self.code == 0, self
        return orjson.loads(self.stdout)


def kraft(*args: str, stdin: str | None = None, timeout: float = 60.0) -> Result:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "kraft.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cli"), 3, extra=CLUSTER_CONFIG)
    try:
        local.start(wait=True)
        yield local
    finally:
        local.kill_all()


@pytest.fixture(scope="package")
def cli(cluster: LocalCluster) -> Any:
    """`cli("topics", "--list", ...)` against the cluster, with --bootstrap-server."""

    def run(command: str, *args: str, stdin: str | None = None) -> Result:
        return kraft(command, "--bootstrap-server", cluster.bootstrap_servers, *args, stdin=stdin)

    return run
