"""Seed import path ``skalds.proxy.kafka``: re-exported from the ``skalds-kafka`` adapter.

Without the adapter installed, importing this module raises an ``ImportError`` that
says what to install (``pip install "skalds[kafka]"``).
"""

from __future__ import annotations

from skalds.errors import MissingExtraError

try:
    from skalds_kafka.proxy import KafkaAdmin, KafkaConfig, KafkaProxy, KafkaTopic
except ImportError as exc:  # the adapter (or its client library) is not installed
    raise MissingExtraError("Kafka", "kafka") from exc

__all__ = ["KafkaAdmin", "KafkaConfig", "KafkaProxy", "KafkaTopic"]
