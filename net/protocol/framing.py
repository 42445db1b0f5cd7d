"""Splitting a Kafka byte stream into frames, without I/O.

Every Kafka request and response travels as a frame: a 4-byte big-endian signed size, then
that many bytes (header + body). ``FrameReader`` is fed whatever the socket delivered and
hands back complete frames (without the size prefix), ready for ``decode_request`` /
``decode_response``.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import ProtocolError

_SIZE: Final = struct.Struct(">i")
SIZE_PREFIX_BYTES: Final = _SIZE.size
# Kafka's socket.request.max.bytes default.
DEFAULT_MAX_FRAME_BYTES: Final = 100 * 1024 * 1024


class FrameTooLargeError(ProtocolError):
    """The peer announced a frame larger than we accept."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes is larger than the limit of {limit}")
        self.size = size
        self.limit = limit


class FrameReader:
    """Accumulates stream bytes and yields complete frames.

    A negative or oversized declared size raises ``ProtocolError`` (``FrameTooLargeError``
    for the latter) as soon as the 4 size bytes are in, before anything is buffered for it.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame (size prefix stripped), or None if more bytes are needed."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < SIZE_PREFIX_BYTES:
            return None
        (size,) = _SIZE.unpack_from(buf, pos)
        if size < 0:
            raise ProtocolError(f"negative frame size {size}")
        if size > self.max_frame_bytes:
            raise FrameTooLargeError(size, self.max_frame_bytes)
        start = pos + SIZE_PREFIX_BYTES
        end = start + size
        if end > len(buf):
            return None
        # One copy: slicing the bytearray itself would copy twice (slice, then bytes).
        with memoryview(buf) as view:
            frame = bytes(view[start:end])
        self._pos = end
        if end > 65536 and end * 2 > len(buf):
            # Drop consumed bytes once they dominate the buffer, so it does not grow forever.
            del buf[:end]
            self._pos = 0
        return frame

    def frames(self) -> list[bytes]:
        """Every complete frame buffered so far."""
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out


class FrameAssembler:
    """Framing for a receiver that reads into buffers it is handed (asyncio's
    ``BufferedProtocol``): ``buffer()`` is where the next bytes go, ``received(n)`` returns
    the frames they completed.

    A frame larger than the staging buffer is received straight into a bytearray of its
    exact size — the socket writes into the frame itself, no copy and no growing buffer —
    so a stream of 1 MiB produce requests allocates one block per request and nothing
    else. Smaller frames are copied out of the reused staging buffer once. A negative or
    oversized size sets ``error`` as soon as its 4 bytes are in (the frames before it are
    still returned); nothing after it is framed.
    """

    def __init__(
        self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, staging_bytes: int = 64 * 1024
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._staging = bytearray(max(staging_bytes, 2 * SIZE_PREFIX_BYTES))
        self._start = 0  # first unconsumed byte of the staging buffer
        self._end = 0  # end of the bytes received into it
        self._frame: bytearray | None = None  # a large frame being received in place
        self._filled = 0
        self.error: ProtocolError | None = None

    def buffer(self) -> memoryview:
        frame = self._frame
        if frame is not None:
            return memoryview(frame)[self._filled :]
        staging = self._staging
        if self._start == self._end:
            self._start = self._end = 0
        elif len(staging) - self._end < SIZE_PREFIX_BYTES * 1024:
            # Little room left: move the unconsumed tail (less than one frame) to the front.
            # An equal-length slice assignment: the buffer never resizes.
            kept = self._end - self._start
            staging[:kept] = staging[self._start : self._end]
            self._start, self._end = 0, kept
        return memoryview(staging)[self._end :]

    def received(self, count: int) -> list[bytes | bytearray]:
        """The frames (size prefix stripped) completed by ``count`` bytes written into the
        last ``buffer()``."""
        if self.error is not None:
            return []
        frame = self._frame
        if frame is not None:
            self._filled += count
            if self._filled < len(frame):
                return []
            self._frame = None
            return [frame]
        self._end += count
        out: list[bytes | bytearray] = []
        staging = self._staging
        while self._end - self._start >= SIZE_PREFIX_BYTES:
            (size,) = _SIZE.unpack_from(staging, self._start)
            if size < 0:
                self.error = ProtocolError(f"negative frame size {size}")
                break
            if size > self.max_frame_bytes:
                self.error = FrameTooLargeError(size, self.max_frame_bytes)
                break
            body = self._start + SIZE_PREFIX_BYTES
            have = self._end - body
            if have >= size:
                with memoryview(staging) as view:
                    out.append(bytes(view[body : body + size]))
                self._start = body + size
                continue
            if SIZE_PREFIX_BYTES + size > len(staging):
                # Larger than the staging buffer: the rest is received into the frame itself.
                big = bytearray(size)
                big[:have] = staging[body : self._end]
                self._frame, self._filled = big, have
                self._start = self._end = 0
            break
        return out
