"""How the controller serves the dashboard: open shell, guarded API, content types."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from skalds.plugins import make_backends, make_plugin_manager
from skalds_controller.app import create_app
from skalds_controller.settings import ControllerSettings

TOKEN = "serving-token"


@pytest.fixture
def client():
    settings = ControllerSettings(api_token=TOKEN)
    backends = make_backends(make_plugin_manager(load_entry_points=False), settings)
    try:
        # no ``with``: the background parts (monitor, dispatcher) are not needed here
        yield TestClient(create_app(settings, backends=backends))
    finally:
        backends.close()


def test_the_shell_loads_without_a_token_on_every_dashboard_address(client):
    for path in ("/dashboard", "/dashboard/", "/dashboard/tasks/abc-1", "/dashboard/skalds"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/dashboard/static/main.js">' in answer.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("main.js", "text/javascript"),
        ("pages/task_detail.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_have_their_content_type(client, path, content_type):
    answer = client.get(f"/dashboard/static/{path}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(content_type)


@pytest.mark.parametrize("path", ["/dashboard/static/missing.js", "/dashboard/static/x.py"])
def test_nothing_but_the_static_files_is_served(client, path):
    assert client.get(path).status_code == 404


def test_a_dotdot_path_is_neither_open_nor_served(client):
    assert client.get("/dashboard/static/%2e%2e/index.html").status_code == 401
    with_token = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/dashboard/static/%2e%2e/index.html", headers=with_token).status_code == 404


def test_the_api_still_needs_the_token(client):
    assert client.get("/api/tasks").status_code == 401
    assert client.get("/dashboard/%2e%2e/api/tasks").status_code == 401  # no way round it
    authorized = client.get("/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200


def test_a_browser_opening_the_root_goes_to_the_dashboard_an_api_client_gets_json(client):
    browser = client.get("/", headers={"Accept": "text/html,*/*"}, follow_redirects=False)
    assert browser.status_code == 307
    assert browser.headers["location"] == "/dashboard"
    api = client.get("/", headers={"Accept": "application/json"})
    assert api.json()["name"] == "Skalds System Controller"
    assert client.get("/").json()["docs"] == "/api/docs"


def test_the_dashboard_files_ship_in_the_wheel():
    """Hatch puts every file under the package directory in the wheel: the page is data."""
    from importlib import resources

    root = resources.files("skalds_controller") / "dashboard"
    assert (root / "index.html").is_file()
    names = {p.name for p in (root / "static" / "pages").iterdir()}
    assert {"overview.js", "skalds.js", "tasks.js", "task_detail.js", "create.js"} <= names
