"""A broker's life with the controller (Kafka's BrokerLifecycleManager).

Register (BrokerRegistration: id, incarnation, listeners, rack) → fenced until its metadata has
caught up with its own registration → heartbeats every `broker.heartbeat.interval.ms`, each
telling the controller how far it has applied the metadata → on shutdown, heartbeats asking to
shut down until the controller has moved its leaderships away (controlled shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

from kraft.controller.client import ControllerClient
from kraft.net.protocol import (
    BrokerHeartbeatRequest,
    BrokerHeartbeatResponse,
    BrokerRegistrationRequest,
    BrokerRegistrationResponse,
    ErrorCode,
)

logger = logging.getLogger(__name__)

# While fenced the broker heartbeats often, so it is unfenced soon after it catches up.
FENCED_HEARTBEAT_S = 0.1
REQUEST_TIMEOUT_S = 5.0
SHUTDOWN_REQUEST_TIMEOUT_S = 2.0


class BrokerLifecycle:
    def __init__(
        self,
        broker_id: int,
        cluster_id: str,
        client: ControllerClient,
        endpoints: Sequence[tuple[str, str, int]],
        rack: str | None,
        applied_offset: Callable[[], int],
        heartbeat_interval_ms: int,
        previous_broker_epoch: int = -1,
    ) -> None:
        self.broker_id = broker_id
        self.cluster_id = cluster_id
        self.client = client
        self.endpoints = list(endpoints)
        self.rack = rack
        self.applied_offset = applied_offset
        self.interval = heartbeat_interval_ms / 1000
        self.incarnation = uuid.uuid4()
        self.epoch = -1
        # KIP-966: the epoch this broker had when it last shut down cleanly (-1: it did not,
        # and may have lost unflushed writes). The controller compares it with the epoch it
        # has registered for this broker.
        self.previous_broker_epoch = previous_broker_epoch
        self.fenced = True
        self.unfenced = asyncio.Event()
        self._shutting_down = False
        self._shutdown_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.tag = f"[broker {broker_id}] "

    async def register(self) -> int:
        request = BrokerRegistrationRequest(
            broker_id=self.broker_id,
            cluster_id=self.cluster_id,
            incarnation_id=self.incarnation,
            listeners=[
                BrokerRegistrationRequest.Listener(name=n, host=h, port=p, security_protocol=0)
                for n, h, p in self.endpoints
            ],
            rack=self.rack,
            previous_broker_epoch=self.previous_broker_epoch,
        )
        while True:
            response = await self.client.send(request, timeout_s=REQUEST_TIMEOUT_S * 4)
            assert isinstance(response, BrokerRegistrationResponse)
            if response.error_code == 0:
                self.epoch = response.broker_epoch
                logger.info("%sregistered at epoch %d", self.tag, self.epoch)
                return self.epoch
            if response.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID:
                raise RuntimeError("the controllers belong to another cluster (cluster.id)")
            logger.warning(
                "%sregistration refused (error %d); retrying", self.tag, response.error_code
            )
            await asyncio.sleep(FENCED_HEARTBEAT_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            try:
                limit = SHUTDOWN_REQUEST_TIMEOUT_S if self._shutting_down else REQUEST_TIMEOUT_S
                # The client abandons a controller that does not answer within one
                # heartbeat interval and asks the quorum's leader instead.
                response = await self.client.send(
                    BrokerHeartbeatRequest(
                        broker_id=self.broker_id,
                        broker_epoch=self.epoch,
                        current_metadata_offset=max(self.applied_offset(), 0),
                        want_fence=False,
                        want_shut_down=self._shutting_down,
                    ),
                    timeout_s=limit,
                )
                assert isinstance(response, BrokerHeartbeatResponse)
                self._on_heartbeat(response)
            except TimeoutError:
                logger.warning("%sno heartbeat answer in %.0f s", self.tag, limit)
                if self._shutting_down:
                    # No controller to approve the shutdown: nobody is left to move the
                    # leaderships to either, so waiting longer helps no one.
                    self._shutdown_done.set()
            if self._shutdown_done.is_set():
                return
            fast = self.fenced or self._shutting_down
            try:
                async with asyncio.timeout(FENCED_HEARTBEAT_S if fast else self.interval):
                    await self._wake.wait()  # a shutdown heartbeat goes out at once
            except TimeoutError:
                pass
            self._wake.clear()

    def _on_heartbeat(self, response: BrokerHeartbeatResponse) -> None:
        if response.error_code in (
            ErrorCode.STALE_BROKER_EPOCH,
            ErrorCode.BROKER_ID_NOT_REGISTERED,
        ):
            # The controller no longer knows this incarnation (e.g. it lost its session):
            # register again, with a new epoch.
            self.fenced = True
            self.unfenced.clear()
            asyncio.get_running_loop().create_task(self._reregister())
            return
        if response.error_code:
            return
        if self._shutting_down and response.should_shut_down:
            self._shutdown_done.set()
            return
        if self.fenced and not response.is_fenced:
            logger.info("%sunfenced", self.tag)
            self.unfenced.set()
        elif not self.fenced and response.is_fenced:
            logger.info("%sfenced by the controller", self.tag)
            self.unfenced.clear()
        self.fenced = response.is_fenced

    async def _reregister(self) -> None:
        # The same process, its logs intact: the registration it had is a clean predecessor.
        self.previous_broker_epoch = self.epoch
        self.incarnation = uuid.uuid4()
        await self.register()

    async def controlled_shutdown(self, timeout_s: float) -> None:
        """Ask the controller to move this broker's leaderships away, then stop heartbeating."""
        self._shutting_down = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                await self._shutdown_done.wait()
            logger.info("%scontrolled shutdown complete", self.tag)
        except TimeoutError:
            logger.warning("%scontrolled shutdown did not complete in %.0f s", self.tag, timeout_s)
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
