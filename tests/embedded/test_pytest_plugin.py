"""The pytest plugin (kraft.pytest_plugin), driven through pytester: inner pytest runs in
subprocesses with real clusters, one run per behaviour that needs isolation (xdist workers,
Ctrl-C); the fixtures, markers, async use and failure logs share one run and its cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import kraft

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

pytest_plugins = ["pytester"]

# The directory holding the `kraft` package under test: the inner runs import the same one.
KRAFT_ROOT = str(Path(kraft.__file__).resolve().parent.parent)
EXIT_TIMEOUT_S = 30.0
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def plugin_args() -> list[str]:
    """`-p kraft.pytest_plugin` where the `pytest11` entry point is not installed (a checkout
    not reinstalled since the entry point was added); with it installed, nothing."""
    if any(ep.value == "kraft.pytest_plugin" for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "kraft.pytest_plugin"]


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocess runs import this kraft and see no outer ini."""
    monkeypatch.setenv("PYTHONPATH", KRAFT_ROOT)
    pytester.makeini(INI)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", *args)


def pid_gone(pid: int) -> bool:
    """The process is gone or a zombie (killed, not yet reaped by its dead parent's init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while not all(pid_gone(p) for p in pids):
        assert time.monotonic() < deadline, f"node processes still running: {pids}"
        time.sleep(0.05)


def test_importing_the_plugin_loads_no_cluster_code() -> None:
    code = (
        "import sys, kraft.pytest_plugin\n"
        "heavy = sorted(m for m in sys.modules if m.startswith('kraft.')"
        " and m != 'kraft.pytest_plugin')\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": KRAFT_ROOT}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


INNER_TESTS = """
import json, os, urllib.request
import pytest

SEEN = {}


def topic_view(cluster, topic):
    with urllib.request.urlopen(f"{cluster.admin_urls[0]}/v1/topics/{topic}", timeout=10) as r:
        return json.load(r)


def test_shared_cluster(kraft_cluster, kraft_bootstrap_servers):
    # --kraft-nodes 1 on the command line wins over kraft_nodes = 3 in the ini file
    assert len(kraft_cluster.nodes) == 1
    assert kraft_bootstrap_servers == kraft_cluster.bootstrap_servers
    SEEN["shared"] = kraft_cluster
    SEEN["pids"] = [n.pid for n in kraft_cluster.nodes]


def test_topic_per_test(kraft_cluster, kraft_topic):
    view = topic_view(kraft_cluster, kraft_topic)
    assert view["topic"]["partitions"] == 1
    assert kraft_topic.startswith("test_topic_per_test-")
    assert kraft_topic not in SEEN.setdefault("topics", set())
    SEEN["topics"].add(kraft_topic)
    # ini kraft_config reached the node: the broker default of retention.ms
    retention = {c["name"]: c["value"] for c in view["configs"]}["retention.ms"]
    assert retention == "7200000"


@pytest.mark.kraft_topic(partitions=3, config={"cleanup.policy": "compact"})
def test_topic_marker(kraft_cluster, kraft_topic):
    view = topic_view(kraft_cluster, kraft_topic)
    assert view["topic"]["partitions"] == 3
    assert view["topic"]["configs"] == {"cleanup.policy": "compact"}
    assert kraft_topic not in SEEN["topics"]
    SEEN["topics"].add(kraft_topic)


def test_topic_factory(kraft_cluster, kraft_topic_factory):
    first = kraft_topic_factory(partitions=2, config={"retention.ms": 60000})
    second = kraft_topic_factory()
    assert first != second
    assert topic_view(kraft_cluster, first)["topic"]["partitions"] == 2
    assert topic_view(kraft_cluster, first)["topic"]["configs"] == {"retention.ms": "60000"}
    assert topic_view(kraft_cluster, second)["topic"]["partitions"] == 1


@pytest.mark.asyncio
async def test_async_produce_consume(kraft_bootstrap_servers, kraft_topic):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async with AIOKafkaProducer(bootstrap_servers=kraft_bootstrap_servers, acks="all") as p:
        await p.send_and_wait(kraft_topic, b"hello")
    consumer = AIOKafkaConsumer(
        kraft_topic, bootstrap_servers=kraft_bootstrap_servers, auto_offset_reset="earliest"
    )
    async with consumer:
        record = await consumer.getone()
    assert record.value == b"hello"


@pytest.mark.kraft(nodes=2, config={"log.retention.ms": 3600000})
def test_own_cluster(kraft_cluster, kraft_bootstrap_servers, kraft_topic):
    assert kraft_cluster is not SEEN["shared"]
    assert len(kraft_cluster.nodes) == 2
    assert kraft_bootstrap_servers == kraft_cluster.bootstrap_servers
    assert set(kraft_bootstrap_servers.split(",")).isdisjoint(
        SEEN["shared"].bootstrap_servers.split(",")
    )
    view = topic_view(kraft_cluster, kraft_topic)
    assert view["topic"]["replication_factor"] == 2
    retention = {c["name"]: c["value"] for c in view["configs"]}["retention.ms"]
    assert retention == "3600000"
    SEEN["own_pids"] = [n.pid for n in kraft_cluster.nodes]


def test_shared_cluster_outlived_the_own_one(kraft_cluster):
    assert kraft_cluster is SEEN["shared"]
    assert [n.pid for n in kraft_cluster.nodes] == SEEN["pids"]
    assert all(n.alive for n in kraft_cluster.nodes)
    with open(os.environ["KRAFT_PIDS_FILE"], "w") as f:
        json.dump({"shared": SEEN["pids"], "own": SEEN["own_pids"]}, f)


def test_fails_on_purpose(kraft_cluster, kraft_topic):
    assert kraft_cluster.nodes[0].alive
    raise AssertionError(f"failing on purpose after creating {kraft_topic}")


def test_fails_without_a_cluster():
    raise AssertionError("failing on purpose, no cluster")
"""


def test_fixtures_markers_async_and_failure_logs(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids_file = inner.path / "pids.json"
    monkeypatch.setenv("KRAFT_PIDS_FILE", str(pids_file))
    inner.makeini(INI + "kraft_nodes = 3\nkraft_config =\n    log.retention.ms=7200000\n")
    inner.makepyfile(test_inner=INNER_TESTS)
    started = time.monotonic()
    result = run(inner, "--kraft-nodes", "1", "-v")
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=7, failed=2)
    # The marked test's id says it got its own cluster.
    result.stdout.fnmatch_lines(["*test_own_cluster[[]kraft[]] PASSED*"])
    # The failing test that used a cluster carries its nodes' logs; the other does not.
    out = result.stdout.str()
    failure = out[out.index("_ test_fails_on_purpose _") : out.index("_ test_fails_without")]
    assert "- kraft node logs (127.0.0.1:" in failure
    logs = failure[failure.index("- kraft node logs") :]
    # The tail is the node's latest: it ends with the creation of this test's topic.
    topic = re.search(r"AssertionError: failing on purpose after creating (\S+)", failure)
    assert topic is not None, failure
    assert f"created topic {topic[1]}" in logs, logs
    rest = out[out.index("_ test_fails_without") :]
    assert "kraft node logs" not in rest.split("short test summary")[0]
    # Every node of both clusters was stopped by the end of the run.
    pids = json.loads(pids_file.read_text())
    assert len(pids["shared"]) == 1 and len(pids["own"]) == 2
    assert_all_gone(pids["shared"] + pids["own"])
    print(f"inner run with two clusters: {elapsed:.1f} s")


XDIST_TEST = """
import json, os


def test_worker_cluster(kraft_cluster, kraft_topic):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    path = os.path.join(os.environ["KRAFT_OUT_DIR"], worker + ".json")
    with open(path, "w") as f:
        json.dump({"bootstrap": kraft_cluster.bootstrap_servers,
                   "pids": [n.pid for n in kraft_cluster.nodes]}, f)
"""


def test_xdist_gives_each_worker_its_own_cluster(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = inner.mkdir("out")
    monkeypatch.setenv("KRAFT_OUT_DIR", str(out_dir))
    inner.makepyfile(test_xdist=XDIST_TEST)
    # --dist each: every worker runs the test, so each must start a cluster of its own.
    result = run(inner, "-p", "xdist", "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=2)
    seen = {p.stem: json.loads(p.read_text()) for p in out_dir.iterdir()}
    assert sorted(seen) == ["gw0", "gw1"]
    ports = [set(s["bootstrap"].split(",")) for s in seen.values()]
    assert ports[0].isdisjoint(ports[1]), ports
    assert_all_gone([pid for s in seen.values() for pid in s["pids"]])


SCOPE_TEST = """
import json, os


def test_first(kraft_cluster, kraft_bootstrap_servers):
    assert kraft_bootstrap_servers == kraft_cluster.bootstrap_servers
    record("first", kraft_cluster)


# MIDDLE


def test_second(kraft_cluster):
    record("second", kraft_cluster)


def record(test, cluster):
    path = os.path.join(os.environ["KRAFT_OUT_DIR"], f"{__name__}-{test}.json")
    with open(path, "w") as f:
        json.dump({"bootstrap": cluster.bootstrap_servers, "id": id(cluster)}, f)
"""


def test_scope_option_narrows_the_sharing(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = inner.mkdir("out")
    monkeypatch.setenv("KRAFT_OUT_DIR", str(out_dir))
    # In module a, a test with its own cluster runs between the two that share one.
    marked = "@pytest.mark.kraft()\ndef test_own(kraft_cluster):\n    record('own', kraft_cluster)"
    inner.makepyfile(
        test_scope_a="import pytest\n" + SCOPE_TEST.replace("# MIDDLE", marked),
        test_scope_b=SCOPE_TEST,
    )
    result = run(inner, "--kraft-scope", "module", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_first*", "*test_own*", "*test_second*"])
    seen = {p.stem: json.loads(p.read_text()) for p in out_dir.iterdir()}
    own = seen.pop("test_scope_a-own")
    assert sorted(seen) == [f"test_scope_{m}-{t}" for m in "ab" for t in ("first", "second")]
    for module in "ab":
        assert seen[f"test_scope_{module}-first"] == seen[f"test_scope_{module}-second"]
    assert seen["test_scope_a-first"]["bootstrap"] != seen["test_scope_b-first"]["bootstrap"]
    assert own["bootstrap"] != seen["test_scope_a-first"]["bootstrap"]


TAKEN_PORT_CONFTEST = """
import socket

import kraft.launcher.configs as configs

# Node 1's Kafka port, as the first cluster start picks it, is already taken by a listener.
taken = socket.socket()
taken.bind(("127.0.0.1", 0))
taken.listen()
picked = []
_free_ports = configs.free_ports


def free_ports(count):
    ports = _free_ports(count)
    if not picked:
        ports[0] = taken.getsockname()[1]
    picked.append(ports)
    return ports


configs.free_ports = free_ports
"""


def test_a_port_taken_before_a_node_binds_it_costs_one_more_start(
    inner: pytest.Pytester,
) -> None:
    inner.makeconftest(TAKEN_PORT_CONFTEST)
    inner.makepyfile(
        test_taken="""
        import conftest

        def test_cluster(kraft_cluster):
            taken = conftest.taken.getsockname()[1]
            first, second = conftest.picked
            assert first[0] == taken and taken not in second
            assert kraft_cluster.bootstrap_servers == f"127.0.0.1:{second[0]}"
        """
    )
    run(inner).assert_outcomes(passed=1)


CTRL_C_TEST = """
import json, os, signal


def test_interrupted(kraft_cluster):
    with open(os.environ["KRAFT_PIDS_FILE"], "w") as f:
        json.dump([n.pid for n in kraft_cluster.nodes], f)
    os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal sends pytest


def test_never_reached(kraft_cluster):
    pass
"""


def test_ctrl_c_stops_the_clusters(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pids_file = inner.path / "pids.json"
    monkeypatch.setenv("KRAFT_PIDS_FILE", str(pids_file))
    inner.makepyfile(test_ctrl_c=CTRL_C_TEST)
    result = run(inner)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    pids = json.loads(pids_file.read_text())
    assert pids
    assert_all_gone(pids)


def test_bad_settings_are_usage_or_collection_errors(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_no_nodes="""
        import pytest

        @pytest.mark.kraft(nodes=0)
        def test_no_nodes(kraft_cluster):
            pass
        """,
        test_unknown_key="""
        import pytest

        @pytest.mark.kraft(replicas=3)
        def test_unknown_key(kraft_cluster):
            pass
        """,
    )
    result = run(inner, "--kraft-config", "no-equals-sign")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kraft-config: expected KEY=VALUE, got 'no-equals-sign'*"])
    result = run(inner, "--kraft-scope", "module", "--kraft-nodes", "x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kraft-nodes*invalid int value: 'x'*"])
    result = run(inner)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_no_nodes.py::test_no_nodes: nodes must be an integer >= 1, not 0",
            "*test_unknown_key.py::test_unknown_key: @pytest.mark.kraft takes only*"
            "not [[]'replicas'[]]",
        ],
        consecutive=False,
    )
