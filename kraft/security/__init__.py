"""Security of the node's connections: TLS contexts from Kafka's `ssl.*` keys (`tls`)."""
