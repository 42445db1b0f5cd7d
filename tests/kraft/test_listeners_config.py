"""Listeners as Kafka has them, and Kafka's form of controller.quorum.voters (config only)."""

from __future__ import annotations

import pytest

import kraft.config as config_module
from kraft.config import (
    RAFT_PORT_OFFSET,
    ConfigError,
    Endpoint,
    build_config,
    derived_raft_port,
    parse_properties,
)

# Kafka 3.x's config/kraft/server.properties, as its documentation writes it (ports as given).
STOCK = """
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""

VOTERS3 = "1@localhost:9093,2@localhost:9095,3@localhost:9097"


def stock(**changes: str) -> dict[str, str]:
    props = parse_properties(STOCK)
    props.update({k.replace("_", "."): v for k, v in changes.items()})
    return props


def error(props: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(props)
    return str(info.value)


def test_the_stock_single_node_config_is_accepted() -> None:
    c = build_config(stock())
    assert c.listeners == (
        Endpoint("PLAINTEXT", "127.0.0.1", 9092),
        Endpoint("CONTROLLER", "127.0.0.1", 9093),
    )
    assert c.security_protocol("PLAINTEXT") == "PLAINTEXT"
    assert c.security_protocol("CONTROLLER") == "PLAINTEXT"
    assert c.inter_broker_listener_name == "PLAINTEXT"
    assert c.voters_name_controller_listeners
    assert c.controller_endpoints() == (("localhost", 9093),)
    assert not c.is_cluster  # one voter: the metadata log is local


def test_the_stock_three_node_config_derives_the_raft_transport() -> None:
    c = build_config(
        stock(
            node_id="2",
            controller_quorum_voters=VOTERS3,
            listeners="PLAINTEXT://:9094,CONTROLLER://:9095",
            advertised_listeners="PLAINTEXT://localhost:9094",
        )
    )
    assert c.is_cluster
    assert c.controller_endpoints() == (
        ("localhost", 9093),
        ("localhost", 9095),
        ("localhost", 9097),
    )
    assert c.raft_voters() == {
        1: ("localhost", 9093 + RAFT_PORT_OFFSET),
        2: ("localhost", 9095 + RAFT_PORT_OFFSET),
        3: ("localhost", 9097 + RAFT_PORT_OFFSET),
    }
    # Bound on the CONTROLLER listener's host.
    assert c.raft_listen_address() == ("127.0.0.1", 9095 + RAFT_PORT_OFFSET)


def test_kafka_4_advertises_the_controller_listener_too() -> None:
    c = build_config(
        stock(advertised_listeners="PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093")
    )
    assert c.advertised("CONTROLLER") == Endpoint("CONTROLLER", "localhost", 9093)


def test_derived_raft_port_stays_in_range() -> None:
    assert derived_raft_port(9093) == 9093 + RAFT_PORT_OFFSET
    assert derived_raft_port(65500) == 65500 - RAFT_PORT_OFFSET


def test_a_voter_entry_that_is_not_the_controller_listener_is_refused() -> None:
    message = error(stock(controller_quorum_voters="1@localhost:9193,2@localhost:9195"))
    assert message.startswith("controller.quorum.voters:")
    assert "1@localhost:9193" in message and "9093" in message


def test_the_earlier_form_keeps_voters_as_raft_transports() -> None:
    c = build_config(
        stock(
            controller_quorum_voters="1@127.0.0.1:9193,2@127.0.0.1:9195",
            controller_quorum_bootstrap_servers="127.0.0.1:9093,127.0.0.1:9095",
        )
    )
    assert not c.voters_name_controller_listeners
    assert c.raft_voters() == {1: ("127.0.0.1", 9193), 2: ("127.0.0.1", 9195)}
    assert c.raft_listen_address() == ("127.0.0.1", 9193)
    assert c.controller_endpoints() == (("127.0.0.1", 9093), ("127.0.0.1", 9095))


def test_a_broker_only_node_dials_the_voters() -> None:
    c = build_config(
        stock(
            process_roles="broker",
            node_id="4",
            controller_quorum_voters=VOTERS3,
            listeners="PLAINTEXT://:9098",
            advertised_listeners="PLAINTEXT://localhost:9098",
        )
    )
    assert c.controller_endpoints() == (
        ("localhost", 9093),
        ("localhost", 9095),
        ("localhost", 9097),
    )


def test_named_plaintext_listeners_and_the_inter_broker_one() -> None:
    c = build_config(
        stock(
            listeners="INTERNAL://:9092,EXTERNAL://:19092,CONTROLLER://:9093",
            advertised_listeners="INTERNAL://broker1:9092,EXTERNAL://public.example:19092",
            listener_security_protocol_map="INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,"
            "CONTROLLER:PLAINTEXT",
            inter_broker_listener_name="INTERNAL",
        )
    )
    assert c.inter_broker_listener_name == "INTERNAL"
    assert c.security_protocol("EXTERNAL") == "PLAINTEXT"
    assert c.advertised("EXTERNAL") == Endpoint("EXTERNAL", "public.example", 19092)


def test_a_listener_missing_from_an_explicit_map_is_refused() -> None:
    message = error(
        stock(
            listeners="INTERNAL://:9092,CONTROLLER://:9093",
            listener_security_protocol_map="CONTROLLER:PLAINTEXT",
            inter_broker_listener_name="INTERNAL",
        )
    )
    assert message.startswith("listener.security.protocol.map:")
    assert "INTERNAL" in message


def test_without_a_map_names_are_protocols_and_controllers_plaintext() -> None:
    props = stock()
    del props["listener.security.protocol.map"]
    c = build_config(props)
    assert c.security_protocol("CONTROLLER") == "PLAINTEXT"
    message = error({**props, "listeners": "INTERNAL://:9092,CONTROLLER://:9093"})
    assert message.startswith("listeners: no security protocol defined for listener INTERNAL")


def test_inter_broker_listener_name_and_protocol_are_exclusive() -> None:
    message = error(stock(security_inter_broker_protocol="PLAINTEXT"))
    assert "only one of them" in message
    props = stock(security_inter_broker_protocol="PLAINTEXT")
    del props["inter.broker.listener.name"]
    assert build_config(props).inter_broker_listener_name == "PLAINTEXT"


def test_the_inter_broker_listener_may_not_be_a_controller_listener() -> None:
    message = error(stock(inter_broker_listener_name="CONTROLLER"))
    assert message.startswith("controller.listener.names:")


def test_servable_protocols_are_one_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # SASL_SSL is not served yet: refused by _refuse_security, until the one set says otherwise.
    props = stock(listeners="PLAINTEXT://:9092,SASL_SSL://:9094,CONTROLLER://:9093")
    assert "listener SASL_SSL://127.0.0.1:9094" in error(props)
    monkeypatch.setattr(
        config_module, "SERVABLE_PROTOCOLS", config_module.SERVABLE_PROTOCOLS | {"SASL_SSL"}
    )
    try:
        build_config(props)
        message = ""
    except ConfigError as e:  # the SASL settings' own checks may still refuse it
        message = str(e)
    assert "listener SASL_SSL://127.0.0.1:9094" not in message


def test_metadata_log_dir_is_a_data_dir_too() -> None:
    c = build_config(stock(metadata_log_dir="/m", log_dirs="/a,/b"))
    assert c.metadata_dir == "/m"
    assert c.all_log_dirs == ("/a", "/b", "/m")
    assert build_config(stock(log_dirs="/a,/b")).all_log_dirs == ("/a", "/b")
