"""No node outlives the process that owns it: a plain script owning a running 3-node
`kraft.Cluster` is SIGKILLed (no atexit, no finally runs) and every node pid must be gone
within a deadline; likewise for `kraft up`, and for a script that just exits (the finalizer
stops the nodes and removes the temporary data dir)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kraft.embedded import tempdirs
from tests.embedded.procs import gone, up_base_port
from tests.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
GONE_DEADLINE_S = 20.0  # the lifeline's clean stop is bounded by kraft.lifeline.GRACE_S (10 s)

OWNER = """
import json, sys
import kraft

cluster = kraft.Cluster(nodes=3).start()
print(json.dumps({"pids": [n.pid for n in cluster.nodes], "dir": str(cluster.data_dir)}),
      flush=True)
if sys.argv[1] == "block":
    sys.stdin.read()  # until the test kills this process
"""


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from pid {proc.pid} within {timeout} s"
    return proc.stdout.readline()


def _owner(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_everything(pids: list[int]) -> None:
    for pid in pids:  # only if the test failed: leave nothing behind
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkilled_owner_leaves_no_node(tmp_path: Path) -> None:
    owner = _owner(tmp_path, "block")
    pids: list[int] = []
    try:
        info = json.loads(_read_line(owner, 60))
        pids = info["pids"]
        assert len(pids) == 3 and not any(gone(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        assert owner.wait(10) == -signal.SIGKILL
        took = wait_until(
            lambda: all(gone(p) for p in pids),
            f"node pids {pids} to exit after their owner was SIGKILLed",
            timeout_s=GONE_DEADLINE_S,
        )
        print(f"all 3 nodes gone {took:.2f} s after the owner's SIGKILL")
    finally:
        owner.kill()
        owner.wait()
        _kill_everything(pids)
        assert owner.stdin is not None and owner.stdout is not None
        owner.stdin.close()
        owner.stdout.close()
    # The owner died before removing its temporary data dir: the next Cluster's start
    # removes the dirs of dead owners.
    (left,) = tmp_path.glob("kraft-cluster-*")
    assert tempdirs.remove_orphaned(str(tmp_path)) == [left]
    assert not left.exists()


def test_owner_that_exits_without_stop_leaves_no_node_and_no_dir(tmp_path: Path) -> None:
    owner = _owner(tmp_path, "exit")
    pids: list[int] = []
    try:
        info = json.loads(_read_line(owner, 60))
        pids = info["pids"]
        assert owner.wait(60) == 0
        # The finalizer ran at exit: nodes stopped (and waited for), temporary dir removed.
        assert all(gone(p) for p in pids)
        assert not Path(info["dir"]).exists()
    finally:
        owner.kill()
        owner.wait()
        _kill_everything(pids)
        assert owner.stdin is not None and owner.stdout is not None
        owner.stdin.close()
        owner.stdout.close()


def test_sigkilled_kraft_up_leaves_no_node(tmp_path: Path) -> None:
    data_dir = tmp_path / "up"
    up = subprocess.Popen(
        [sys.executable, "-m", "kraft", "up", "--nodes", "1"]
        + ["--data-dir", str(data_dir), "--base-port", str(up_base_port())],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids: list[int] = []
    cluster_json = data_dir / "cluster.json"  # written once the cluster is ready
    try:
        wait_until(
            lambda: cluster_json.exists() or up.poll() is not None, "kraft up to be ready", 60
        )
        assert up.poll() is None, f"kraft up exited with {up.returncode}"
        pids = [n["pid"] for n in json.loads(cluster_json.read_text())["nodes"]]
        assert pids and not any(gone(p) for p in pids)
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        wait_until(
            lambda: all(gone(p) for p in pids),
            f"kraft up's node pids {pids} to exit after it was SIGKILLed",
            timeout_s=GONE_DEADLINE_S,
        )
    finally:
        up.kill()
        up.wait()
        _kill_everything(pids)
