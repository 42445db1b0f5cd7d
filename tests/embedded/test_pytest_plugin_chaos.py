"""The `kraft_chaos` fixture and `@pytest.mark.kraft(chaos=True)`, driven through pytester: an
inner run's tests inject faults and one fails with a fault still on; teardown heals, stops the
nodes and removes the proxies all the same (the inner run uses our Toxiproxy server through
$TOXIPROXY_URL, so the outer test sees what is left on it)."""

from __future__ import annotations

import json

import pytest

from kraft.chaos.toxiclient import ToxiproxyClient
from kraft.chaos.toxiproxy import ThreadedToxiproxy
from tests.embedded.test_pytest_plugin import assert_all_gone, inner, run

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

pytest_plugins = ["pytester"]

__all__ = ["inner"]  # the fixture, used here by name

INNER_TESTS = """
import json, os
import pytest
from kafka import KafkaProducer

def record(name, cluster):
    path = os.path.join(os.environ["KRAFT_OUT_DIR"], name + ".json")
    with open(path, "w") as f:
        json.dump({"pids": [n.pid for n in cluster.nodes],
                   "bootstrap": cluster.bootstrap_servers,
                   "direct": cluster.direct_bootstrap_servers}, f)

def test_fails_with_the_clients_cut_off(kraft_chaos):
    record("failing", kraft_chaos)
    kraft_chaos.cut_clients()
    kraft_chaos.latency(100)
    assert False, "the service gave up"

@pytest.mark.kraft(nodes=2)
def test_sized_by_the_marker(kraft_chaos):
    record("sized", kraft_chaos)
    assert len(kraft_chaos.nodes) == 2 and len(kraft_chaos.chaos.links()) == 8

@pytest.mark.kraft(chaos=True)
def test_marked_cluster_has_chaos(kraft_cluster):
    record("marked", kraft_cluster)
    producer = KafkaProducer(bootstrap_servers=kraft_cluster.bootstrap_servers)
    try:
        with kraft_cluster.cut_clients():
            pass
        producer.send("t", b"v").get(timeout=30)
    finally:
        producer.close()

def test_the_shared_cluster_has_none(kraft_cluster):
    with pytest.raises(Exception, match="chaos=True"):
        kraft_cluster.cut_clients()
"""


def test_kraft_chaos_heals_and_stops_after_a_failing_test(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = inner.path / "out"
    out_dir.mkdir()
    inner.makepyfile(test_inner=INNER_TESTS)
    monkeypatch.setenv("KRAFT_OUT_DIR", str(out_dir))
    with ThreadedToxiproxy() as server:
        monkeypatch.setenv("TOXIPROXY_URL", server.url)
        result = run(inner, "-q")
        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines(["*the service gave up*", "*kraft node logs*"])
        # Every proxy of every cluster is gone (and with it every toxic).
        assert ToxiproxyClient(server.url).proxies() == {}
    seen = {p.stem: json.loads(p.read_text()) for p in out_dir.iterdir()}
    assert sorted(seen) == ["failing", "marked", "sized"]
    for name, info in seen.items():
        assert info["bootstrap"] != info["direct"], name
    assert_all_gone([pid for info in seen.values() for pid in info["pids"]])
