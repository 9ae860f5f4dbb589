"""``skalds controller`` and ``python -m skalds.system_controller.main``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from skalds.cli import main
from skalds_controller import ControllerSettings, create_app
from skalds_controller.server import ControllerServer, InsecureBindError, check_bind
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Uvicorn running on (http://\S+)")


def controller_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SYSTEM_CONTROLLER_", "SKALDS_"))
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Running:
    """A controller process; its output is collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def url(self) -> str:
        def found() -> str | None:
            match = LISTENING.search("".join(self.output))
            return match.group(1) if match else None

        try:
            return wait_for(found, timeout=20)
        except AssertionError:
            raise AssertionError("".join(self.output)) from None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_the_seed_module_path_serves_the_api_with_settings_from_the_environment(tmp_path):
    env = controller_env(SYSTEM_CONTROLLER_MODE="CONTROLLER", SYSTEM_CONTROLLER_PORT="0")
    proc = Running([sys.executable, "-m", "skalds.system_controller.main"], env, tmp_path)
    try:
        url = proc.url()
        root = httpx.get(f"{url}/", timeout=5).json()
        assert root["mode"] == "CONTROLLER" and root["docs"] == "/api/docs"
        assert httpx.get(f"{url}/api/docs", timeout=5).status_code == 200
    finally:
        code = proc.stop()
    assert code == 0, "".join(proc.output)


def test_skalds_controller_options_win_over_the_environment(tmp_path):
    env = controller_env(SYSTEM_CONTROLLER_MODE="CONTROLLER", SYSTEM_CONTROLLER_PORT="1")
    args = [sys.executable, "-m", "skalds", "controller", "--port", "0", "--mode", "monitor"]
    proc = Running(args, env, tmp_path)
    try:
        assert httpx.get(f"{proc.url()}/", timeout=5).json()["mode"] == "MONITOR"
    finally:
        assert proc.stop() == 0, "".join(proc.output)


def test_a_non_loopback_address_without_a_token_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("SKALDS_API_TOKEN", raising=False)
    assert main(["controller", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0:0 without an API token" in err
    assert "SKALDS_API_TOKEN" in err
    with pytest.raises(InsecureBindError):
        check_bind(ControllerSettings(host="10.1.2.3"))
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(ControllerSettings(host=host))  # loopback needs no token


def test_the_seed_module_refuses_too_and_says_why(tmp_path):
    env = controller_env(SYSTEM_CONTROLLER_HOST="0.0.0.0")
    result = subprocess.run(
        [sys.executable, "-m", "skalds.system_controller.main"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "without an API token" in result.stderr and "SKALDS_API_TOKEN" in result.stderr


def test_with_a_token_any_address_is_served_and_requests_need_it(skalds_backends):
    settings = ControllerSettings(
        load_entry_points=False, host="0.0.0.0", port=0, api_token="t0k", log_level="WARNING"
    )
    server = ControllerServer(settings, create_app(settings, backends=skalds_backends))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.ready.wait(10)
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/api/tasks").status_code == 401
        headers = {"Authorization": "Bearer t0k"}
        assert httpx.get(f"{server.url}/api/tasks", headers=headers).status_code == 200
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_an_address_in_use_is_a_clear_error(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["controller", "--port", str(port), "--mode", "CONTROLLER"])
    assert code == 1
    assert f"the controller could not start on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_seed_module_exports_the_controller():
    import skalds.system_controller.main as seed

    assert seed.__all__ == ["ControllerSettings", "EmbeddedSkalds", "create_app", "main", "serve"]
    assert seed.create_app is create_app and seed.ControllerSettings is ControllerSettings


def test_without_the_controller_package_the_import_names_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['skalds_controller'] = None\n"
        "try:\n"
        "    import skalds.system_controller.main\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=30
    )
    assert 'System Controller support needs: pip install "skalds[controller]"' in result.stdout


def test_the_commands_say_which_extra_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "skalds_controller", None)
    monkeypatch.delitem(sys.modules, "skalds.system_controller.main", raising=False)
    for command in (["controller"], ["up"]):
        assert main(command) == 2
        assert 'pip install "skalds[controller]"' in capsys.readouterr().err


@pytest.mark.parametrize("command", ["controller", "up"])
def test_controller_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: skalds {command}" in out and "SYSTEM_CONTROLLER_MODE" in out
