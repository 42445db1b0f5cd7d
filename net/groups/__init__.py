"""Consumer groups: the group coordinators and committed offsets.

`state` (one group), `coordinator` (every group of the offsets partitions this broker
leads: pure, with injected clock, timers and writer), `records` (the byte formats of
`__consumer_offsets`), `timer` (keyed timers: manual for tests, asyncio for the broker),
`service` (the wiring to the loop, and through narrow interfaces it declares, to the
broker's partitions and the controller), `common` (what the coordinators and their split
parts share, so the parts never import the coordinators composing them).

KIP-848 consumer groups (`group.protocol=consumer`) beside the classic ones: `consumer` (one
group, its epochs and each member's reconciliation), `consumer_coordinator` (every consumer
group of the partitions this broker leads; pure like the classic coordinator, whose clock,
timers and writer it shares), `consumer_records` (their record formats) and `assignors`
(the server-side `uniform` and `range` assignors).
"""
