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
