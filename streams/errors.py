"""The exceptions RetailPulse raises: one root, a few typed subclasses.

Library errors (fastavro, confluent-kafka, redis-py) are wrapped in these ``from exc`` so
callers handle one family and the original cause stays in the traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "EncodeError",
    "InfraError",
    "RetailPulseError",
    "SchemaError",
    "ValidationError",
]


class RetailPulseError(Exception):
    """Root of every error RetailPulse raises on purpose."""


class ConfigError(RetailPulseError):
    """A setting is missing or wrong; the message names the setting and how to fix it."""


class SchemaError(RetailPulseError):
    """A schema or the manifest is invalid, or two versions are incompatible."""


class EncodeError(RetailPulseError):
    """A record could not be serialized with its family's schema."""


class DecodeError(RetailPulseError):
    """Bytes on a topic are not a valid record: bad framing, unknown id, bad Avro body.

    ``schema_id`` is the id read from the header when one could be read.
    """

    def __init__(self, message: str, *, schema_id: int | None = None) -> None:
        super().__init__(message)
        self.schema_id = schema_id


class ValidationError(RetailPulseError):
    """A well-formed record whose values cannot be true (NaN price, year-1970 timestamp...)."""


class DeliveryError(RetailPulseError):
    """Kafka did not confirm a write (output or dead-letter); the flow must not move on."""


class InfraError(RetailPulseError):
    """An embedded server could not be started, reached or stopped."""
