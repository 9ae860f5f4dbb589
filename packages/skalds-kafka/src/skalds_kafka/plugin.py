"""The adapter's hook implementations: ``kafka://`` URLs build a :class:`KafkaEventBus`."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from skalds.hookspecs import hookimpl

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds_kafka.bus import KafkaEventBus

__all__ = ["skalds_make_event_bus"]


@hookimpl
def skalds_make_event_bus(url: str, config: SkaldConfig) -> KafkaEventBus | None:
    """Build the Kafka event bus for ``kafka://host:port[,host2:port]``; other schemes: None.

    Raises:
        BackendUnavailableError: no broker answered (the message names host:port).
        ConfigError: a malformed URL or inconsistent security settings.
    """
    if urlsplit(url).scheme != "kafka":
        return None
    from skalds_kafka.bus import KafkaEventBus  # here: finding the plugin imports no client

    return KafkaEventBus.from_url(url, config)
