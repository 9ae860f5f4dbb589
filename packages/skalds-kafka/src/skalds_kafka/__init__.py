"""Skalds Kafka adapter: the event bus on Kafka and the seed ``skalds.proxy.kafka`` API.

Installed, it answers ``kafka://host:port`` event bus URLs (``SKALDS_EVENT_BUS`` or
``KAFKA_HOST``) through the ``skalds.plugins`` entry point ``kafka``.
"""

from __future__ import annotations

from skalds_kafka._settings import ConnectionSettings
from skalds_kafka.bus import DEAD_LETTER_TOPIC, KafkaEventBus
from skalds_kafka.subscription import KafkaSubscription

__all__ = ["DEAD_LETTER_TOPIC", "ConnectionSettings", "KafkaEventBus", "KafkaSubscription"]
