"""Configuration (seed import path ``skalds.config.skald_config``)."""
