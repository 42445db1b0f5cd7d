"""The built wheel, installed into a fresh virtualenv, owns only the import name `kraft` and
works from a directory full of modules named like kraft's parts (a user's project that has
its own `log.py`, `net.py`, `admin.py`, `chaos.py`): `import kraft...` and `kraft up`
still import kraft's own modules.

A process test: it builds the wheel, makes a venv and installs the wheel with its
dependencies (from the package index, or pip's cache), then starts a 1-node cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHADOWS = ("log", "net", "admin", "chaos")
STEP_TIMEOUT_S = 600
READY_TIMEOUT_S = 60.0

pytestmark = [pytest.mark.timeout(900), pytest.mark.process]


def _run(args: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO_ROOT), "-w", str(out)])
    (built,) = out.glob("kraft-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(env_dir)])
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
    return env_dir


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A user's project directory whose own modules would shadow generic names."""
    project = tmp_path / "project"
    project.mkdir()
    for name in SHADOWS:
        (project / f"{name}.py").write_text(
            f"raise ImportError('the project-local {name}.py was imported instead of kraft')\n"
        )
    return project


def test_wheel_owns_only_the_kraft_import_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert z.read(top_level).decode().split() == ["kraft"]
    roots = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert roots == {"kraft"}
    for part in SHADOWS:
        assert f"kraft/{part}/__init__.py" in names


def test_wheel_ships_the_dashboard_page(wheel: Path) -> None:
    """The page is package data: a node installed from the wheel serves it with no checkout."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for name in ("index.html", "dashboard.js", "dashboard.css", "favicon.svg"):
        assert f"kraft/admin/static/{name}" in names, sorted(n for n in names if "admin" in n)


def test_wheel_ships_the_default_config(wheel: Path) -> None:
    """`kraft serve` without --config reads kraft/server.properties, a copy of the repo's
    config/server.properties (the package file is a symlink to it)."""
    with zipfile.ZipFile(wheel) as z:
        shipped = z.read("kraft/server.properties").decode()
    assert shipped == (REPO_ROOT / "config" / "server.properties").read_text()
    assert "node.id=1" in shipped


def test_python_dash_m_kraft_is_the_kraft_command(venv: Path, project_dir: Path) -> None:
    outputs = [
        subprocess.run(
            command, cwd=project_dir, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for command in (
            [str(venv / "bin" / "python"), "-m", "kraft", "serve", "--help"],
            [str(venv / "bin" / "kraft"), "serve", "--help"],
        )
    ]
    assert "--lifeline-fd" in outputs[0]
    assert outputs[0].replace("__main__.py", "kraft") == outputs[1]


def test_imports_from_a_directory_with_shadowing_modules(venv: Path, project_dir: Path) -> None:
    code = (
        "import kraft.log.segment, kraft.net.broker.broker, kraft.admin, kraft.chaos\n"
        "import kraft, os\n"
        "assert 'site-packages' in kraft.__file__, kraft.__file__\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(project_dir)}
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _free_port_block(size: int) -> int:
    """A base port P with P..P+size-1, P+100.., P+200.. free (kraft up's layout)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + 200 + size > 65535:
            continue
        try:
            held = []
            for offset in (0, 100, 200):
                for i in range(size):
                    t = socket.socket()
                    held.append(t)
                    t.bind(("127.0.0.1", base + offset + i))
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
        return base
    raise RuntimeError("no free port block")


@pytest.fixture
def kraft_up(venv: Path, project_dir: Path) -> Iterator[str]:
    base = _free_port_block(1)
    env = {**os.environ, "PYTHONPATH": str(project_dir)}
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "kraft"),
            "up",
            "--nodes",
            "1",
            "--data-dir",
            str(project_dir / "data"),
            "--base-port",
            str(base),
        ],
        cwd=project_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        bootstrap = None
        lines: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert proc.stdout is not None
        while bootstrap is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # exited
            lines.append(line)
            if line.startswith("bootstrap servers:"):
                bootstrap = line.split(":", 1)[1].strip()
        assert bootstrap is not None, "kraft up did not become ready:\n" + "".join(lines)
        yield bootstrap
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0, f"kraft up exited with {proc.returncode}"


def test_kraft_up_serves_produce_and_consume(kraft_up: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"packaging-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kraft_up, acks="all")
    try:
        sent = [producer.send(topic, f"m{i}".encode()).get(timeout=30) for i in range(5)]
    finally:
        producer.close()
    assert [m.offset for m in sent] == [0, 1, 2, 3, 4]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kraft_up,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    try:
        values = []
        for message in consumer:
            values.append(message.value)
            if len(values) == 5:
                break
    finally:
        consumer.close()
    assert values == [f"m{i}".encode() for i in range(5)]
