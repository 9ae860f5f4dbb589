"""Skalds Kafka adapter: the event bus on Kafka and the seed ``skalds.proxy.kafka`` API.

Installed, it answers ``kafka://host:port`` event bus URLs (``SKALDS_EVENT_BUS`` or
``KAFKA_HOST``) through the ``skalds.plugins`` entry point ``kafka``.

These names are imported on first use (:func:`skalds.utils.lazy.lazy_attributes`):
finding the plugin, as every node does, imports no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skalds.utils.lazy import lazy_attributes

if TYPE_CHECKING:
    from skalds_kafka._settings import ConnectionSettings
    from skalds_kafka.bus import DEAD_LETTER_TOPIC, KafkaEventBus
    from skalds_kafka.subscription import KafkaSubscription

__all__ = ["DEAD_LETTER_TOPIC", "ConnectionSettings", "KafkaEventBus", "KafkaSubscription"]

__getattr__ = lazy_attributes(
    __name__,
    {
        "ConnectionSettings": "skalds_kafka._settings",
        "DEAD_LETTER_TOPIC": "skalds_kafka.bus",
        "KafkaEventBus": "skalds_kafka.bus",
        "KafkaSubscription": "skalds_kafka.subscription",
    },
)
