"""The dashboard in a real headless browser (Debian's chromium + chromium-driver, driven by
selenium), loaded from node 1 of a 3-node cluster: what it shows is checked against the
cluster as a Kafka client sees it, a partition it must highlight once a node is gone, and a
write made from the page is checked through a Kafka client. Screenshots go to the test's
output directory (tmp_path, under --basetemp when given); the path is printed.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.process, pytest.mark.timeout(300)]

FAST_SESSIONS = {"broker.session.timeout.ms": "2000", "broker.heartbeat.interval.ms": "500"}
TOPIC = "orders"
GROUP = "billing"
TOKEN = "dashboard-test-token"
PARTITIONS = 3
RECORDS = 240
PAGE_TIMEOUT_S = 30.0
# Enough rows for the whole page: the screenshot shows every card.
WINDOW = (1400, 2400)


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed "
            "(apt-get install chromium chromium-driver; scripts/test.sh does it)"
        )
    return browser, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    """Poll `check` (against the live page) until it returns something truthy."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def attempt(d: Any) -> Any:
        try:
            return check(d)
        except StaleElementReferenceException:  # the page re-rendered under us: ask again
            return None

    try:
        return WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.25).until(attempt)
    except TimeoutException:
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        raise AssertionError(
            f"the page did not show {what} in {PAGE_TIMEOUT_S} s\n{logs}"
        ) from None


def _produce(bootstrap: str, first: int = 0, count: int = RECORDS) -> Counter[int]:
    """`count` keyed records with acks=all; how many each partition got."""
    from confluent_kafka import Producer

    per_partition: Counter[int] = Counter()
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            per_partition[msg.partition()] += 1

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(first, first + count):
        producer.produce(TOPIC, key=f"key-{i}", value=f"value-{i}", on_delivery=delivered)
    assert producer.flush(30) == 0, "records still in flight after 30 s"
    assert not failures, failures
    return per_partition


def _partition_rows(driver: Any, topic: str) -> dict[int, dict[str, str]]:
    """The page's partition table of `topic`: partition → {column: text, "class": ...}."""
    from selenium.webdriver.common.by import By

    rows: dict[int, dict[str, str]] = {}
    selector = f'table.partitions[data-topic="{topic}"] tbody tr[data-partition]'
    for tr in driver.find_elements(By.CSS_SELECTOR, selector):
        cells = {
            td.get_attribute("data-col"): td.text for td in tr.find_elements(By.TAG_NAME, "td")
        }
        cells["class"] = tr.get_attribute("class") or ""
        rows[int(tr.get_attribute("data-partition"))] = cells
    return rows


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x.strip().isdigit()]


def _screenshot(driver: Any, out: Path, name: str) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], max(WINDOW[1], int(height) + 40))
    path = out / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot at {path}"
    print(f"dashboard screenshot: {path}")
    return path


def _consumer(bootstrap: str) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False}
    )


def _commit(bootstrap: str, offsets: dict[int, int]) -> None:
    """Commit offsets for GROUP as a consumer that joined nothing (an empty group)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(bootstrap)
    try:
        consumer.commit(
            offsets=[TopicPartition(TOPIC, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def _committed(bootstrap: str) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    consumer = _consumer(bootstrap)
    try:
        found = consumer.committed(
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def _group_rows(driver: Any) -> dict[int, dict[str, str]]:
    from selenium.webdriver.common.by import By

    selector = f'table.group-offsets[data-group="{GROUP}"] tbody tr[data-partition]'
    return {
        int(tr.get_attribute("data-partition")): {
            td.get_attribute("data-col"): td.text for td in tr.find_elements(By.TAG_NAME, "td")
        }
        for tr in driver.find_elements(By.CSS_SELECTOR, selector)
    }


def _kafka_topic(bootstrap: str, name: str) -> Any:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=name, timeout=10)
    return metadata.topics[name]


def test_dashboard_shows_the_cluster_and_drives_writes(
    make_cluster: Callable[..., Cluster], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    cluster = make_cluster(extra={**FAST_SESSIONS, "kraft.admin.auth.token": TOKEN})
    urls = cluster.local.admin_urls
    assert set(urls) == {1, 2, 3}, urls
    cluster.wait_brokers({1, 2, 3}, on=[1, 2, 3])
    cluster.create_topic(1, TOPIC, PARTITIONS, 3)
    cluster.wait_topic(TOPIC, on=[1, 2, 3])
    produced = _produce(cluster.bootstrap_servers)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    try:
        urllib.request.urlopen(urls[1] + "/", timeout=10).close()
    except urllib.error.HTTPError as e:
        raise AssertionError(
            f"GET / answered {e.code}: the node does not serve the dashboard "
            "(kraft.admin.server.FEATURES needs kraft.admin.dashboard)"
        ) from None
    browser.get(urls[1] + "/")
    assert browser.title == "kraft dashboard"

    # Brokers: the three, registered; the controller the quorum elected.
    _wait(
        browser,
        "three registered brokers",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#brokers tr.broker-registered")) == 3,
    )
    controller = cluster.wait_active_controller()
    _wait(
        browser,
        f"controller {controller}",
        lambda d: d.find_element(By.ID, "controller-id").text == str(controller),
    )
    _wait(
        browser,
        "a healthy cluster",
        lambda d: d.find_element(By.ID, "health-badge").get_attribute("data-healthy") == "true",
    )

    # Partitions: leaders and replicas as Kafka's metadata has them, HW = what was produced.
    meta = _kafka_topic(cluster.bootstrap_servers, TOPIC)
    want = {
        p.id: {"leader": str(p.leader), "replicas": sorted(p.replicas), "hw": str(produced[p.id])}
        for p in meta.partitions.values()
    }
    assert len(want) == PARTITIONS

    def shows_produced(d: Any) -> bool:
        rows = _partition_rows(d, TOPIC)
        return set(rows) == set(want) and all(
            rows[i]["leader"] == w["leader"]
            and sorted(_ints(rows[i]["replicas"])) == w["replicas"]
            and rows[i]["hw"] == w["hw"]
            and "under-replicated" not in rows[i]["class"]
            for i, w in want.items()
        )

    _wait(
        browser,
        f"the partitions of {TOPIC} with their leaders and {RECORDS} records",
        shows_produced,
    )
    assert sum(int(r["hw"]) for r in _partition_rows(browser, TOPIC).values()) == RECORDS

    # The record browser: the latest records of partition 0, as produced.
    form = browser.find_element(By.ID, "records-form")
    Select(form.find_element(By.NAME, "topic")).select_by_value(TOPIC)
    limit = form.find_element(By.NAME, "limit")
    limit.clear()
    limit.send_keys("5")
    form.find_element(By.TAG_NAME, "button").click()
    latest = min(5, produced[0])

    def records_shown(d: Any) -> list[tuple[int, str]] | None:
        rows = d.find_elements(By.CSS_SELECTOR, "#records tbody tr[data-offset]")
        got = [
            (
                int(r.get_attribute("data-offset")),
                r.find_element(By.CSS_SELECTOR, '[data-col="value"]').text,
            )
            for r in rows
        ]
        return got if len(got) == latest else None

    records = _wait(browser, "the latest records of partition 0", records_shown)
    assert sorted(o for o, _ in records) == list(range(produced[0] - latest, produced[0]))
    assert all(v.startswith("value-") for _, v in records), records

    # Traffic while the page watches: the chart's rate rises above zero and the HWs follow.
    def counted(d: Any) -> int:
        return int(d.find_element(By.ID, "throughput").get_attribute("data-counted") or 0)

    before = counted(browser)
    produced += _produce(cluster.bootstrap_servers, RECORDS, RECORDS)
    _wait(
        browser,
        f"the chart counting the {RECORDS} new records",
        lambda d: counted(d) - before == RECORDS,
    )
    _wait(
        browser,
        f"{2 * RECORDS} records in all",
        lambda d: sum(int(r["hw"]) for r in _partition_rows(d, TOPIC).values()) == 2 * RECORDS,
    )

    # A group's lag per partition: the high watermark minus its committed offset.
    half = {p: n // 2 for p, n in produced.items()}
    _commit(cluster.bootstrap_servers, half)
    want_lag = {p: str(produced[p] - half[p]) for p in half}

    def group_lag(d: Any) -> bool:
        rows = _group_rows(d)
        return {p: r["lag"] for p, r in rows.items()} == want_lag and all(
            rows[p]["committed"] == str(half[p]) for p in half
        )

    _wait(browser, f"group {GROUP} with its lag per partition", group_lag)

    # A write from the page: reset the group to the earliest offsets; a Kafka client agrees.
    reset = browser.find_element(By.ID, "reset-offsets")
    reset.find_element(By.NAME, "group").send_keys(GROUP)
    reset.find_element(By.NAME, "topic").send_keys(TOPIC)
    Select(reset.find_element(By.NAME, "to")).select_by_value("earliest")
    # Writes need the node's token: without it the page shows the API's refusal.
    reset.find_element(By.TAG_NAME, "button").click()
    refused = _wait(
        browser,
        "the refusal of a write without the token",
        lambda d: reset.find_element(By.CSS_SELECTOR, ".result .error").text,
    )
    assert refused.startswith("UNAUTHORIZED"), refused
    assert _committed(cluster.bootstrap_servers) == half
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    reset.find_element(By.TAG_NAME, "button").click()
    _wait(
        browser,
        "the reset result",
        lambda d: reset.find_element(By.CSS_SELECTOR, ".result .ok").text.startswith("done"),
    )
    assert _committed(cluster.bootstrap_servers) == dict.fromkeys(range(PARTITIONS), 0)
    _wait(
        browser,
        f"group {GROUP} lagging by everything",
        lambda d: (
            {p: r["lag"] for p, r in _group_rows(d).items()}
            == {p: str(n) for p, n in produced.items()}
        ),
    )
    _screenshot(browser, shots, "1-healthy")

    # Leadership from the page: broker 2 into maintenance (its leaderships move, the brokers
    # table says so), a named replica made leader, then broker 2 out again.
    maintenance = browser.find_element(By.ID, "maintenance")
    field = maintenance.find_element(By.NAME, "broker")
    field.clear()
    field.send_keys("2")
    Select(maintenance.find_element(By.NAME, "mode")).select_by_value("in")
    maintenance.find_element(By.TAG_NAME, "button").click()
    _wait(
        browser,
        "the maintenance result",
        lambda d: maintenance.find_element(By.CSS_SELECTOR, ".result .ok").text.startswith("done"),
    )
    _wait(
        browser,
        "broker 2 in maintenance, leading nothing",
        lambda d: (
            d.find_element(
                By.CSS_SELECTOR,
                '#brokers tr.broker-maintenance[data-broker="2"] td[data-col="leads"]',
            ).text
            == "0"
        ),
    )
    assert all(
        p.leader != 2 for p in _kafka_topic(cluster.bootstrap_servers, TOPIC).partitions.values()
    )
    first = _kafka_topic(cluster.bootstrap_servers, TOPIC).partitions[0]
    target = next(r for r in first.replicas if r not in (2, first.leader))
    elect = browser.find_element(By.ID, "elect-leaders")
    for name, value in (("topic", TOPIC), ("partition", "0"), ("replica", str(target))):
        field = elect.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    elect.find_element(By.TAG_NAME, "button").click()
    _wait(
        browser,
        "the named-replica election result",
        lambda d: elect.find_element(By.CSS_SELECTOR, ".result .ok").text.startswith("done"),
    )
    _wait(
        browser,
        f"replica {target} leading {TOPIC}-0",
        lambda d: _kafka_topic(cluster.bootstrap_servers, TOPIC).partitions[0].leader == target,
    )
    Select(maintenance.find_element(By.NAME, "mode")).select_by_value("out")
    maintenance.find_element(By.TAG_NAME, "button").click()
    _wait(
        browser,
        "broker 2 registered again",
        lambda d: d.find_elements(
            By.CSS_SELECTOR, '#brokers tr.broker-registered[data-broker="2"]'
        ),
    )

    # A node stops: its partitions lose a replica from the ISR, and the page highlights them.
    cluster.kill(3)

    def under_replicated(d: Any) -> dict[int, dict[str, str]] | None:
        rows = _partition_rows(d, TOPIC)
        marked = {i: r for i, r in rows.items() if "under-replicated" in r["class"]}
        return marked if len(marked) == PARTITIONS else None

    marked = _wait(browser, "every partition under-replicated", under_replicated)
    for row in marked.values():
        assert 3 not in _ints(row["isr"]) and 3 in _ints(row["replicas"]), row
    highlighted = browser.find_element(
        By.CSS_SELECTOR, f'table.partitions[data-topic="{TOPIC}"] tr.under-replicated'
    )
    plain = browser.find_element(By.CSS_SELECTOR, "#brokers tbody tr")
    assert highlighted.value_of_css_property("background-color") != plain.value_of_css_property(
        "background-color"
    ), "an under-replicated row looks like any other"
    _wait(
        browser,
        "broker 3 fenced",
        lambda d: d.find_elements(By.CSS_SELECTOR, '#brokers tr.broker-fenced[data-broker="3"]'),
    )
    _wait(
        browser,
        "an unhealthy cluster",
        lambda d: d.find_element(By.ID, "health-badge").get_attribute("data-healthy") == "false",
    )

    # A write from the page: create a topic, then see it through a Kafka client.
    create = browser.find_element(By.ID, "create-topic")
    for name, value in (
        ("name", "from-dashboard"),
        ("partitions", "2"),
        ("replication_factor", "2"),
        ("configs", "retention.ms=600000"),
    ):
        field = create.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    create.find_element(By.TAG_NAME, "button").click()
    _wait(
        browser,
        "the create result",
        lambda d: create.find_element(By.CSS_SELECTOR, ".result .ok").text.startswith("done"),
    )
    made = _kafka_topic(cluster.bootstrap_servers, "from-dashboard")
    assert made.error is None and len(made.partitions) == 2
    assert all(len(p.replicas) == 2 for p in made.partitions.values())

    # The API's error, as the page shows it: the same topic again.
    create.find_element(By.TAG_NAME, "button").click()
    error = _wait(
        browser,
        "the create error",
        lambda d: create.find_element(By.CSS_SELECTOR, ".result .error").text,
    )
    assert "TOPIC_ALREADY_EXISTS" in error, error
    _wait(
        browser,
        "the new topic in the topic list",
        lambda d: d.find_elements(
            By.CSS_SELECTOR, 'table.partitions[data-topic="from-dashboard"] tr[data-partition]'
        ),
    )

    # No script error and no file missing; the API's refusals above (401, 400) are expected.
    page_errors = [
        e
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and not (e.get("source") == "network" and "/v1/" in e["message"])
    ]
    assert not page_errors, page_errors
    _screenshot(browser, shots, "2-node-3-down")
