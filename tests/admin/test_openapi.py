"""Schemathesis over the whole /v1 OpenAPI document against a live node: no request, however
malformed, gets a 5xx, and every response matches the document (status, content type, schema).

Bounded (max_examples per operation) so the run stays short. One operation is left out: the
controlled shutdown of the node's own broker takes it out of service for the rest of the
session (test_api.py covers it); topic creation runs with validate_only. Brokers the run put
into maintenance are taken out at the end."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.admin import KafkaAdminClient
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from kraft.launcher import LocalCluster
from tests.admin.conftest import TOKEN, Admin
from tests.wait import wait_until

MAX_EXAMPLES = 60  # per operation and generation mode


def test_every_operation_conforms(
    cluster: LocalCluster, admin: Admin, request: pytest.FixtureRequest
) -> None:
    # As in any cluster that has seen a consumer group: __consumer_offsets exists (before,
    # the coordinator of a new group is not available yet: a 503).
    kadmin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        kadmin.describe_groups(["st-setup"])  # FindCoordinator creates the offsets topic
    finally:
        kadmin.close()
    wait_until(
        lambda: "__consumer_offsets" in {t["name"] for t in admin.get("/v1/topics")},
        "the offsets topic",
    )
    document = requests.get(admin.url + "/v1/openapi.json", timeout=10).json()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.config.update(base_url=admin.url)
    sent = 0
    operations = 0
    for result in loaded.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "POST" and operation.path.endswith("controlled-shutdown"):
            continue
        operations += 1
        strategies = [
            operation.as_strategy(generation_mode=mode)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        ]

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            nonlocal sent
            sent += 1
            if case.path == "/v1/topics" and isinstance(case.body, dict):
                # Checked, not created: a shared cluster must not grow hundreds of
                # partitions per example (creation itself is tested in test_api.py). A
                # negative case whose invalid part is validate_only itself keeps it: made
                # valid here, it would be (rightly) accepted where a refusal is expected.
                if isinstance(case.body.get("validate_only", False), bool):
                    case.body["validate_only"] = True
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
                # Schema-valid is not always acceptable: the cluster refuses, with a 4xx,
                # e.g. a replication factor above its broker count or an unknown config.
                excluded_checks=[positive_data_acceptance],
            )

        run()
    for broker in cluster.broker_ids:
        assert admin.call("DELETE", f"/v1/brokers/{broker}/maintenance").status_code == 200
    line = f"schemathesis: {sent} requests over {operations} operations"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    assert operations == 21 and sent >= operations
