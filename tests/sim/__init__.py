"""The simulation kernel shared by the seeded simulations (the quorum's in
tests/kraft/quorum_sim/, replication's in tests/net/replication_sim/): a simulated clock
(`kernel.Clock`), a deterministic event heap with timers (`kernel.Kernel`), seeded random
streams (`kernel.stream`) and directed links between nodes with per-link faults, delivering
through the heap (`links.Network`). Each simulation keeps only its own domain on top.
"""
