"""Errors raised by the log, each carrying the Kafka error code a broker answers with.

`log/` imports nothing else of the project, so the codes are plain ints here; they are the
numbers of Kafka's protocol (`CORRUPT_MESSAGE` = 2, ...), and the broker maps them 1:1.
"""

from __future__ import annotations


class LogError(Exception):
    """Base of every error the log reports to its caller."""

    error_code: int = -1  # UNKNOWN_SERVER_ERROR


class CorruptRecordError(LogError):
    """CRC mismatch, impossible length or a torn batch: CORRUPT_MESSAGE."""

    error_code = 2


class InvalidRecordError(LogError):
    """A well-formed batch that breaks a rule of the log (offsets, keys): INVALID_RECORD."""

    error_code = 87


class UnsupportedMagicError(LogError):
    """Message format v0/v1 (magic 0 or 1): INVALID_RECORD, as Kafka 4 answers (it dropped
    the old formats)."""

    error_code = 87


class RecordBatchTooLargeError(LogError):
    """A batch larger than `max.message.bytes` or the segment size: MESSAGE_TOO_LARGE."""

    error_code = 10


class OffsetOutOfRangeError(LogError):
    """A read or truncation outside [log start, log end]: OFFSET_OUT_OF_RANGE."""

    error_code = 1


class LogStorageError(LogError):
    """An I/O failure of the log directory: KAFKA_STORAGE_ERROR."""

    error_code = 56
