"""Chaos suite: toxiproxy-compatible server, faults, workloads, checker (issue 13)."""
