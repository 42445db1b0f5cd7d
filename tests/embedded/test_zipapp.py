"""The single-file build: `scripts/build-zipapp.sh` makes `kraft.pyz` (shiv), and a bare
Python (the base interpreter, isolated with -I: no venv, no site-packages with kraft's
dependencies) runs `kraft up` from an empty directory, the zipapp's own client produces and
consumes a record, and the cluster stops cleanly. `kraft serve` without --config starts from
the packaged default config.

A process test of about 15-30 s (the build installs the dependencies from pip's cache or the
package index: the first run on a machine without a cache takes longer).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kraft.launcher import free_ports
from tests.embedded.procs import gone, up_base_port
from tests.wait import wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The interpreter the venv was made from: Python alone, without the venv's site-packages (here
# it cannot import aiohttp or any other dependency of kraft).
BARE_PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zipapp") / "kraft.pyz"
    subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-zipapp.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture
def bare_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No PYTHONPATH or venv; shiv unpacks into the test's directory (removed with it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["SHIV_ROOT"] = str(tmp_path / "shiv")
    yield env


def _kraft(zipapp: Path, env: dict[str, str], cwd: Path, *args: str, stdin: str = "") -> str:
    result = subprocess.run(
        [BARE_PYTHON, "-I", str(zipapp), *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kraft {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_zipapp_runs_kraft_up_from_an_empty_dir(
    zipapp: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    base = up_base_port()
    bootstrap = f"127.0.0.1:{base}"
    up = subprocess.Popen(
        [BARE_PYTHON, "-I", str(zipapp), "up", "--nodes", "1", "--base-port", str(base)],
        cwd=work,
        env=bare_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    cluster_json = work / "data" / "cluster" / "cluster.json"
    try:
        wait_until(
            lambda: cluster_json.exists() or up.poll() is not None,
            "the zipapp's kraft up to be ready",
            120,
        )
        assert up.poll() is None, f"kraft up exited: {up.communicate()[1]}"
        _kraft(
            zipapp,
            bare_env,
            work,
            *("topics", "--create", "--topic", "zipped", "--bootstrap-server", bootstrap),
        )
        _kraft(
            zipapp,
            bare_env,
            work,
            *("produce", "--bootstrap-server", bootstrap, "--topic", "zipped", "--acks", "all"),
            stdin="from the zipapp\n",
        )
        out = _kraft(
            zipapp,
            bare_env,
            work,
            *("consume", "--bootstrap-server", bootstrap, "--topic", "zipped"),
            *("--from-beginning", "--max-messages", "1", "--timeout-ms", "20000"),
        )
        assert "from the zipapp" in out
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0, up.communicate()[1]
        assert not cluster_json.exists()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        assert up.stderr is not None
        up.stderr.close()


def test_zipapp_serve_uses_the_packaged_config(
    zipapp: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    kafka, controller, admin = free_ports(3)
    overrides = {
        # The packaged config's ports (9092, 9093, 8080) may be taken on a shared machine.
        "listeners": f"PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka}",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "kraft.admin.listener": f"127.0.0.1:{admin}",
    }
    serve = subprocess.Popen(
        [BARE_PYTHON, "-I", str(zipapp), "serve"]
        + [f"--override={k}={v}" for k, v in overrides.items()],
        cwd=tmp_path,
        env=bare_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert serve.stdout is not None
        ready, _, _ = select.select([serve.stdout], [], [], 120)
        line = serve.stdout.readline() if ready else b""
        assert b"ready" in line, line
        # The packaged config's log.dirs, relative to the working directory.
        assert (tmp_path / "data" / "node-1" / "meta.properties").exists()
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        assert serve.stdout is not None
        serve.stdout.close()
    assert gone(serve.pid)
