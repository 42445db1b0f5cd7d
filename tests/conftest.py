"""Test kinds, as markers set by where a test lives (a test's own marker wins):

- ``unit``: pure or in-process tests (state machines, codecs, storage, in-process servers
  on 127.0.0.1): ``pytest -m unit`` runs them in seconds;
- ``simulation``: seeded simulations and fuzzers that run many generated cases in-process;
- ``process``: tests that start node processes (or other child processes that write, like the
  crash writer); run these under the shared heavy-test lock.

``pytest`` with no ``-m`` runs everything. Tests outside tests/ (examples/) say their kind with a
marker; unmarked, they count as ``process`` (the cautious kind: run under the heavy-test lock).
"""

from __future__ import annotations

from pathlib import Path

import pytest

KINDS = ("unit", "simulation", "process")
_TESTS = Path(__file__).resolve().parent
# The examples' suites (examples/*/) run real clusters, as their users' suites would.
_EXAMPLES = _TESTS.parent / "examples"
# Directories (first level under tests/) and files (relative to tests/) of each kind.
_PROCESS_DIRS = frozenset({"admin", "cli", "cluster", "e2e", "embedded"})
_PROCESS_FILES = frozenset(
    {
        "kraft/test_quorum_processes.py",
        "log/test_crash.py",
        "chaos/test_toxiproxy_cli.py",
        "chaos/test_chaos_run.py",
        "chaos/test_checker_fails.py",
        "chaos/test_topology.py",
        "chaos/test_faults.py",
        "security/test_tls_process.py",
        "security/test_sasl_process.py",
    }
)
_SIMULATION_FILES = frozenset(
    {
        "kraft/test_quorum_sim.py",
        "net/test_replication_sim.py",
        "net/test_server_fuzz.py",
        "net/protocol/test_protocol_fuzz.py",
        "net/protocol/test_protocol_roundtrip.py",
    }
)


def kind_of(path: Path) -> str:
    resolved = path.resolve()
    if not resolved.is_relative_to(_TESTS):
        return "process"  # examples/ and anything else outside tests/: the cautious kind
    relative = resolved.relative_to(_TESTS)
    if relative.parts[0] in _PROCESS_DIRS or relative.as_posix() in _PROCESS_FILES:
        return "process"
    if relative.as_posix() in _SIMULATION_FILES:
        return "simulation"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(kind) for kind in KINDS):
            item.add_marker(kind_of(item.path))
