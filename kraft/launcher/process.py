"""One `kraft serve` child process, started isolated from the caller's cwd and PYTHONPATH."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import kraft
from kraft.launcher.configs import NodeSpec

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

# The directory holding the `kraft` package this launcher belongs to: its nodes import it.
KRAFT_ROOT = str(Path(kraft.__file__).resolve().parent.parent)

# argv: <root> kraft.cli <kraft arguments...>. The module name stays in the command line so
# `ps` (and tests looking for a config's node) see `kraft.cli serve --config ...`.
_BOOTSTRAP = (
    "import sys\n"
    "root = sys.argv[1]\n"
    "sys.path.insert(0, root)\n"
    "import kraft, os.path\n"
    "got = os.path.dirname(os.path.dirname(os.path.realpath(kraft.__file__)))\n"
    "if got != root:\n"
    "    sys.exit(f'kraft launcher: imported kraft from {got}, not from {root}')\n"
    "from kraft.cli import main\n"
    "sys.argv = [sys.argv[2], *sys.argv[3:]]\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


class LaunchError(RuntimeError):
    """A node exited or the cluster did not become ready; the message carries the nodes'
    log tails, `node_id` the node that failed (None when no one node is to blame)."""

    def __init__(self, message: str, node_id: int | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id


def node_command(*args: str) -> list[str]:
    """The command line of `kraft <args>` run isolated from the caller's cwd and PYTHONPATH.

    -E ignores PYTHON* variables, -P keeps the cwd off sys.path; -u (unbuffered, so the ready
    line arrives at once) and -X faulthandler (a SIGABRT prints every thread's stack) stand in
    for the PYTHONUNBUFFERED / PYTHONFAULTHANDLER variables that -E ignores."""
    return [
        sys.executable,
        "-E",
        "-P",
        "-u",
        "-X",
        "faulthandler",
        "-c",
        _BOOTSTRAP,
        KRAFT_ROOT,
        "kraft.cli",
        *args,
    ]


class NodeProcess:
    """One `kraft serve` child; its data dir survives stops, kills and restarts."""

    def __init__(self, spec: NodeSpec, serve_args: Sequence[str] = ()) -> None:
        self.spec = spec
        self.serve_args = tuple(serve_args)  # more `kraft serve` arguments, e.g. --log-level
        self.node_id = spec.node_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(spec.log_path)
        self.starts = 0
        self.started_at = 0.0  # time.monotonic() of the last start
        self.paused = False
        self.ready = False  # printed its ready line since the last start
        # The write end of this node's lifeline pipe (see kraft.lifeline); held while it runs.
        self._lifeline: int | None = None

    @property
    def kafka_port(self) -> int:
        return self.spec.kafka_port

    @property
    def controller_port(self) -> int:
        return self.spec.controller_port

    @property
    def raft_port(self) -> int:
        return self.spec.raft_port

    @property
    def bootstrap(self) -> str:
        return self.spec.bootstrap

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process; `wait_ready` waits for its ready line."""
        if self.alive:
            raise LaunchError(f"node {self.node_id} is already running")
        self._reap()
        self.starts += 1
        self.started_at = time.monotonic()
        self.paused = False
        self.ready = False
        os.makedirs(self.spec.directory, exist_ok=True)
        # The node exits when this process is gone, even by SIGKILL (kraft.lifeline): the
        # kernel closes our write end and the node reads EOF. os.pipe's ends are not
        # inherited by other children (close-on-exec); pass_fds hands the read end to this one.
        read_end, write_end = os.pipe()
        try:
            with open(self.log_path, "ab") as log:
                log.write(f"---- kraft.launcher: start #{self.starts}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    node_command(
                        "serve",
                        "--config",
                        self.spec.config_path,
                        "--lifeline-fd",
                        str(read_end),
                        *self.serve_args,
                    ),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    pass_fds=(read_end,),
                    bufsize=0,  # unbuffered: select() sees the ready line
                )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._lifeline = write_end

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the node prints its ready line: a broker once it is registered and unfenced,
        a controller once its quorum member runs."""
        if self.ready:
            return
        proc = self.proc
        if proc is None or proc.stdout is None:
            raise LaunchError(f"node {self.node_id} is not started")
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        self.ready = b"ready" in line
        if not self.ready:
            raise LaunchError(
                f"node {self.node_id} (pid {proc.pid}) not ready "
                f"{time.monotonic() - self.started_at:.1f} s after its start (exit code "
                f"{self._exit_code(eof=bool(ready) and not line)}, said {line!r})\n"
                + self.log_tail(),
                self.node_id,
            )

    def _exit_code(self, eof: bool) -> int | None:
        """The exit code, None while it runs; after EOF on its stdout the process is exiting,
        so its code is worth a short wait."""
        if self.proc is None:
            return None
        if eof:
            try:
                return self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                return None
        return self.proc.poll()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Stop (cleanly) and start again on the same data dir; waits until ready."""
        self.stop()
        self.start()
        self.wait_ready(timeout)

    def terminate(self) -> None:
        """SIGTERM (a clean stop: controlled shutdown first) without waiting; see
        `wait_exit`."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; the exit code (None if killed)."""
        if self.proc is None:
            return None
        self.terminate()
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            return None
        self._reap()
        return code

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the process freezes (its sockets stay open, nothing answers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.proc is not None and self.proc.poll() is None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        self.proc = None
        self.paused = False
        self.ready = False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"---- node {self.node_id}: no log at {self.log_path}"
        return f"---- node {self.node_id} log (last {lines} lines)\n" + "\n".join(text[-lines:])

    def diagnose(self) -> str:
        """For a node that stopped making progress: where each thread waits in the kernel,
        then every thread's Python stack (SIGABRT makes faulthandler print them to the log;
        the node dies), then the log's tail."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return self.log_tail()
        waits = []
        for task in sorted(Path(f"/proc/{proc.pid}/task").glob("*")):
            try:
                comm = (task / "comm").read_text().strip()
                state = (task / "stat").read_text().rsplit(") ", 1)[1].split()[0]
                wchan = (task / "wchan").read_text().strip()
            except OSError:
                continue
            waits.append(f"  thread {task.name} {comm}: state {state}, wchan {wchan}")
        self.resume()
        proc.send_signal(signal.SIGABRT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        return f"---- node {self.node_id} threads\n" + "\n".join(waits) + "\n" + self.log_tail(80)
