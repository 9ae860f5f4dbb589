"""``SKALD_RESOURCES`` / ``--resources``: what a node offers to tasks that ask for resources."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from skalds.cli import main
from skalds.config.skald_config import SkaldConfig
from skalds.node.skald import Skald


@pytest.mark.parametrize(
    "env",
    ["gpu=2,ram_gb=64", " gpu = 2 , ram_gb=64, ", '{"gpu": 2, "ram_gb": 64}'],
)
def test_resources_come_from_env_as_pairs_or_json(monkeypatch, env):
    monkeypatch.setenv("SKALD_RESOURCES", env)
    assert SkaldConfig().resources == {"gpu": 2.0, "ram_gb": 64.0}


def test_no_resources_unless_set(monkeypatch):
    monkeypatch.delenv("SKALD_RESOURCES", raising=False)
    assert SkaldConfig().resources == {}
    monkeypatch.setenv("SKALD_RESOURCES", "")
    assert SkaldConfig().resources == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("gpu", "'gpu' is not NAME=AMOUNT, e.g. gpu=2,ram_gb=64"),
        ("gpu=many", "resource gpu: amount 'many' is not a number"),
        ("gpu=-1", "resource gpu: amount '-1' must be a number >= 0"),
        ("gpu=nan", "must be a number >= 0"),
        ("=2", "resource name '' must be non-empty"),
        ("big gpu=2", "must be non-empty, without spaces"),
        ('{"gpu": 2', "not valid JSON"),
        ("[1, 2]", "is not NAME=AMOUNT"),
    ],
)
def test_bad_resources_are_refused_with_what_is_wrong(monkeypatch, env, message):
    monkeypatch.setenv("SKALD_RESOURCES", env)
    with pytest.raises(ValidationError, match="SKALD_RESOURCES") as err:
        SkaldConfig()
    assert message in str(err.value)


def test_resources_as_an_argument_win_over_env(monkeypatch):
    monkeypatch.setenv("SKALD_RESOURCES", "gpu=8")
    assert SkaldConfig(resources={"gpu": 1}).resources == {"gpu": 1.0}


def test_skalds_node_resources_option_sets_what_the_node_offers(monkeypatch):
    started: list[dict[str, float]] = []

    def run(self: Skald) -> int:
        started.append(self.config.resources)
        return 0

    monkeypatch.setattr(Skald, "run", run)
    monkeypatch.setenv("SKALD_RESOURCES", "gpu=8")
    assert main(["node", "--no-entry-points", "--resources", "gpu=1,ram_gb=16"]) == 0
    assert started == [{"gpu": 1.0, "ram_gb": 16.0}]


def test_a_bad_resources_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["node", "--resources", "gpu"])
    assert exit_.value.code == 2
    assert "argument --resources: resources: 'gpu' is not NAME=AMOUNT" in capsys.readouterr().err
