"""Connection settings: ``kafka://`` URLs and the security fields, as librdkafka properties.

One place turns what the user configured (``SkaldConfig``'s ``kafka_*`` fields, a
``KafkaConfig``, a URL) into client properties, so the event bus, the seed proxy and
the admin client can never disagree about how to reach and authenticate to Kafka.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from skalds.errors import ConfigError

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig

__all__ = [
    "DEFAULT_PORT",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "ConnectionSettings",
    "UrlOptions",
    "parse_kafka_url",
]

DEFAULT_PORT = 9092
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class ConnectionSettings:
    """Where Kafka is and how to authenticate; ``client_config()`` gives librdkafka's view.

    Args:
        bootstrap: ``host:port[,host:port...]``.
        username: SASL user; setting it without a protocol selects ``SASL_PLAINTEXT``
            (``SASL_SSL`` when ``ssl_ca_file`` is set too).
        password: SASL password (never shown in ``repr``).
        security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
        sasl_mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default PLAIN with SASL).
        ssl_ca_file: CA certificate (PEM) that signed the brokers' certificates.
    """

    bootstrap: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    ssl_ca_file: str | None = None

    @classmethod
    def from_skald_config(cls, bootstrap: str, config: SkaldConfig) -> ConnectionSettings:
        """Take the security fields of ``config`` (``KAFKA_USERNAME``...) for ``bootstrap``."""
        return cls(
            bootstrap=bootstrap,
            username=config.kafka_username,
            password=config.kafka_password,
            security_protocol=config.kafka_security_protocol,
            sasl_mechanism=config.kafka_sasl_mechanism,
            ssl_ca_file=config.kafka_ssl_ca_file,
        )

    def protocol(self) -> str:
        """The security protocol in use, explicit or implied by the other fields."""
        if self.security_protocol:
            proto = self.security_protocol.strip().upper()
            if proto not in SECURITY_PROTOCOLS:
                raise ConfigError(
                    f"kafka_security_protocol {self.security_protocol!r} is not one of "
                    f"{', '.join(SECURITY_PROTOCOLS)}"
                )
            return proto
        if self.username:
            return "SASL_SSL" if self.ssl_ca_file else "SASL_PLAINTEXT"
        return "SSL" if self.ssl_ca_file else "PLAINTEXT"

    def client_config(self) -> dict[str, Any]:
        """Return the librdkafka properties for connecting and authenticating.

        Raises:
            ConfigError: an unknown protocol or mechanism, SASL without credentials,
                credentials with a protocol that cannot use them, a missing CA file.
        """
        proto = self.protocol()
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "security.protocol": proto}
        if proto.startswith("SASL_"):
            if not (self.username and self.password):
                raise ConfigError(
                    f"Kafka security protocol {proto} needs kafka_username and kafka_password"
                )
            mechanism = (self.sasl_mechanism or "PLAIN").strip().upper()
            if mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"kafka_sasl_mechanism {self.sasl_mechanism!r} is not one of "
                    f"{', '.join(SASL_MECHANISMS)}"
                )
            conf.update(
                {
                    "sasl.mechanism": mechanism,
                    "sasl.username": self.username,
                    "sasl.password": self.password,
                }
            )
        elif self.username or self.password or self.sasl_mechanism:
            raise ConfigError(
                f"Kafka credentials are set but the security protocol is {proto}; "
                "use SASL_PLAINTEXT or SASL_SSL (kafka_security_protocol)"
            )
        if self.ssl_ca_file:
            if not proto.endswith("SSL"):
                raise ConfigError(
                    f"kafka_ssl_ca_file is set but the security protocol is {proto}; "
                    "use SSL or SASL_SSL"
                )
            if not os.path.isfile(self.ssl_ca_file):
                raise ConfigError(f"kafka_ssl_ca_file {self.ssl_ca_file!r} does not exist")
            conf["ssl.ca.location"] = self.ssl_ca_file
        return conf


@dataclass(frozen=True)
class UrlOptions:
    """What a ``kafka://`` URL says: the brokers and the adapter's own options."""

    bootstrap: str
    dead_letter: bool = False
    publish_timeout: float | None = None


def parse_kafka_url(url: str) -> UrlOptions:
    """Parse ``kafka://host:port[,host2:port][?dead_letter=true&publish_timeout=10]``.

    A host without a port gets 9092. ``dead_letter`` falls back to the
    ``SKALDS_KAFKA_DEAD_LETTER`` environment variable.

    Raises:
        ConfigError: not a kafka:// URL, no host, a bad port or option value.
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"not a kafka:// URL: {url!r}")
    if "@" in parts.netloc:
        raise ConfigError(
            "put Kafka credentials in KAFKA_USERNAME/KAFKA_PASSWORD, not in the kafka:// URL"
        )
    servers = [_host_port(item, url) for item in parts.netloc.split(",") if item.strip()]
    if not servers:
        raise ConfigError(f"kafka:// URL without a host: {url!r} (use kafka://host:9092)")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"dead_letter", "publish_timeout"}
    if unknown:
        raise ConfigError(f"unknown kafka:// URL option(s): {', '.join(sorted(unknown))}")
    dead_letter = _flag(
        query.get("dead_letter", os.environ.get("SKALDS_KAFKA_DEAD_LETTER", "")), "dead_letter"
    )
    timeout: float | None = None
    if "publish_timeout" in query:
        try:
            timeout = float(query["publish_timeout"])
        except ValueError:
            timeout = -1.0
        if timeout <= 0:
            raise ConfigError(f"publish_timeout must be a positive number of seconds in {url!r}")
    return UrlOptions(",".join(servers), dead_letter, timeout)


def _host_port(item: str, url: str) -> str:
    host, sep, port = item.strip().rpartition(":")
    if not sep:
        return f"{item.strip()}:{DEFAULT_PORT}"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad Kafka broker address {item!r} in {url!r} (use host:port)")
    return f"{host}:{int(port)}"


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")
