"""Outage tests restart the shared test FerretDB as it ran, never in another mode."""

from __future__ import annotations

import pytest

from tests import services_control


@pytest.fixture
def mode_file(tmp_path, monkeypatch):
    monkeypatch.setattr(services_control, "SERVICES_DIR", tmp_path)
    (tmp_path / "run").mkdir()
    return tmp_path / "run" / "ferretdb.mode"


def test_a_ferretdb_without_authentication_restarts_without_it(mode_file, monkeypatch):
    mode_file.write_text("noauth _pragma=synchronous(normal)\n")
    monkeypatch.setenv("SKALDS_FERRETDB_AUTH", "root:root")
    assert "SKALDS_FERRETDB_AUTH" not in services_control.restart_env("ferretdb")


def test_a_ferretdb_with_authentication_restarts_with_its_user(mode_file, monkeypatch):
    mode_file.write_text("auth:root _pragma=synchronous(normal)\n")
    monkeypatch.setenv("SKALDS_FERRETDB_AUTH", "root:root")
    assert services_control.restart_env("ferretdb")["SKALDS_FERRETDB_AUTH"] == "root:root"
    monkeypatch.delenv("SKALDS_FERRETDB_AUTH")
    with pytest.raises(RuntimeError, match="SKALDS_FERRETDB_AUTH=root:<password>"):
        services_control.restart_env("ferretdb")
    # and it is not stopped when it could not be started again as it runs
    with pytest.raises(RuntimeError, match="runs with authentication"):
        services_control.stop_service("ferretdb")


def test_other_services_restart_with_the_environment_as_it_is(mode_file, monkeypatch):
    monkeypatch.setenv("SKALDS_FERRETDB_AUTH", "root:root")
    assert services_control.restart_env("redis")["SKALDS_FERRETDB_AUTH"] == "root:root"
