"""Kafka wire protocol and broker networking."""
