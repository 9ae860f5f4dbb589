"""kafka:// URLs and the KAFKA_* security fields become the right librdkafka settings.

There is no SASL or TLS broker among the test services, so these check the mapping
(what the clients are given), not a handshake; the PLAINTEXT path is what every other
Kafka test exercises against the real broker.
"""

from __future__ import annotations

import pytest

pytest.importorskip("skalds_kafka")

from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError
from skalds_kafka import ConnectionSettings
from skalds_kafka._settings import parse_kafka_url
from skalds_kafka.proxy import KafkaConfig


def test_plain_settings_only_name_the_brokers():
    assert ConnectionSettings("h:9092").client_config() == {
        "bootstrap.servers": "h:9092",
        "security.protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_ssl_with_each_mechanism(tmp_path, mechanism):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = SkaldConfig(
        kafka_username="alice",
        kafka_password="s3cret",
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_mechanism=mechanism,
        kafka_ssl_ca_file=str(ca),
    )
    conf = ConnectionSettings.from_skald_config("b1:9093,b2:9093", cfg).client_config()
    assert conf == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism.upper(),
        "sasl.username": "alice",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(ca),
    }


def test_credentials_without_a_protocol_mean_sasl_with_plain_by_default():
    conf = ConnectionSettings("h:9092", username="u", password="p").client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == "PLAIN"


def test_a_ca_file_alone_means_ssl(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    conf = ConnectionSettings("h:9093", ssl_ca_file=str(ca)).client_config()
    assert conf == {
        "bootstrap.servers": "h:9093",
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca),
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"security_protocol": "TLS"}, "kafka_security_protocol 'TLS' is not one of"),
        ({"security_protocol": "SASL_SSL"}, "needs kafka_username and kafka_password"),
        (
            {"username": "u", "password": "p", "sasl_mechanism": "GSSAPI"},
            "kafka_sasl_mechanism 'GSSAPI' is not one of",
        ),
        (
            {"username": "u", "password": "p", "security_protocol": "SSL"},
            "credentials are set but the security protocol is SSL",
        ),
        ({"ssl_ca_file": "/nonexistent/ca.pem"}, "does not exist"),
        (
            {"ssl_ca_file": "/x", "security_protocol": "PLAINTEXT"},
            "kafka_ssl_ca_file is set but the security protocol is PLAINTEXT",
        ),
    ],
)
def test_inconsistent_security_settings_are_refused_with_the_field_name(settings, message):
    with pytest.raises(ConfigError, match=message):
        ConnectionSettings("h:9092", **settings).client_config()


def test_the_password_never_shows_in_a_repr():
    assert "s3cret" not in repr(ConnectionSettings("h:1", username="u", password="s3cret"))
    assert "s3cret" not in repr(KafkaConfig(username="u", password="s3cret"))


@pytest.mark.parametrize(
    ("url", "bootstrap"),
    [
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://a:9092,b:9093", "a:9092,b:9093"),
        ("kafka://broker", "broker:9092"),
    ],
)
def test_kafka_urls_name_one_or_more_brokers(url, bootstrap, monkeypatch):
    monkeypatch.delenv("SKALDS_KAFKA_DEAD_LETTER", raising=False)
    options = parse_kafka_url(url)
    assert options.bootstrap == bootstrap
    assert options.dead_letter is False


def test_url_options_and_the_dead_letter_environment_flag(monkeypatch):
    monkeypatch.delenv("SKALDS_KAFKA_DEAD_LETTER", raising=False)
    options = parse_kafka_url("kafka://h:1?dead_letter=true&publish_timeout=2.5")
    assert (options.dead_letter, options.publish_timeout) == (True, 2.5)
    monkeypatch.setenv("SKALDS_KAFKA_DEAD_LETTER", "1")
    assert parse_kafka_url("kafka://h:1").dead_letter is True
    assert parse_kafka_url("kafka://h:1?dead_letter=false").dead_letter is False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://", "without a host"),
        ("kafka://h:notaport", "bad Kafka broker address"),
        ("kafka://u:p@h:9092", "KAFKA_USERNAME"),
        ("kafka://h:9092?nope=1", "unknown kafka:// URL option"),
        ("kafka://h:9092?publish_timeout=0", "publish_timeout"),
        ("kafka://h:9092?dead_letter=maybe", "dead_letter must be true or false"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, message):
    with pytest.raises(ConfigError, match=message):
        parse_kafka_url(url)


def test_the_seed_kafka_config_defaults_and_its_bootstrap_servers():
    assert KafkaConfig().bootstrap_servers == "localhost:9092"
    assert KafkaConfig(host="127.0.0.1", port=19092).bootstrap_servers == "127.0.0.1:19092"
    assert KafkaConfig(host="a:1,b:2").bootstrap_servers == "a:1,b:2"
    with pytest.raises(ValueError, match="extra"):
        KafkaConfig(hots="typo")  # type: ignore[call-arg]
