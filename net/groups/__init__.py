"""Consumer groups: the classic group coordinator and committed offsets.

`state` (one group), `coordinator` (every group of the offsets partitions this broker
leads: pure, with injected clock, timers and writer), `records` (the byte formats of
`__consumer_offsets`), `timer` (keyed timers: manual for tests, asyncio for the broker),
`service` (the wiring to the broker's partitions, loop and controller).
"""
