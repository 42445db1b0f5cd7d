"""Partition log storage: segments, indexes, checkpoints, recovery, retention, compaction.

Imports nothing else of the project."""
