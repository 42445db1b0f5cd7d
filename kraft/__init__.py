"""kraft: a Kafka-compatible, ZooKeeper-free streaming cluster."""
