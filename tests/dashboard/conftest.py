"""Fixtures for the dashboard's browser tests: a real ``skalds up`` and Debian's chromium.

One ``skalds up`` (controller + node + example workers, in-memory backends) serves the
whole module set on a free port with an API token; each test gets a fresh browser
context (its own sessionStorage) signed in through the login screen.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_service
from tests.helpers import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "dashboard-test-token"
NODE_ID = "dash-node"
REPO = Path(__file__).resolve().parents[2]
DASHBOARD_LINE = re.compile(r"^\s*dashboard\s+(http://\S+)/dashboard\s*$", re.MULTILINE)
EXPECT_TIMEOUT_MS = 15_000
_SERVICE_ENV = ("KAFKA_", "REDIS_", "MONGO_", "SKALDS_", "SYSTEM_CONTROLLER_", "SKALD_", "DB_NAME")

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def screenshot_dir() -> Path:
    """``SKALDS_SCREENSHOT_DIR`` (README images: docs/screenshots), else build/screenshots."""
    where = Path(os.environ.get("SKALDS_SCREENSHOT_DIR") or REPO / "build" / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-image
    page.screenshot(path=str(path), full_page=full_page)
    return path


class UpProcess:
    """``python -m skalds up`` in a child process, its output collected."""

    def __init__(self, cwd: Path) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(_SERVICE_ENV)}
        env = {**clean, "PYTHONUNBUFFERED": "1", "SKALDS_API_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skalds",
                "up",
                "--port",
                "0",
                "--skald-id",
                NODE_ID,
                "--resources",
                "gpu=1",
            ],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def url(self) -> str:
        def found() -> str | None:
            match = DASHBOARD_LINE.search("".join(self.lines))
            return match.group(1) if match else None

        try:
            return wait_for(found, timeout=30)
        except AssertionError:
            text = "".join(self.lines)
            raise AssertionError(f"skalds up printed no dashboard URL:\n{text}") from None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


_RUNNING: list[UpProcess] = []


@pytest.fixture(scope="session")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a running ``skalds up`` (with ``SKALDS_API_TOKEN`` set)."""
    up = UpProcess(tmp_path_factory.mktemp("skalds-up"))
    _RUNNING.append(up)
    try:
        yield up.url()
    finally:
        _RUNNING.remove(up)
        up.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing browser test shows what ``skalds up`` logged (its last 80 lines)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _RUNNING and "base_url" in getattr(item, "fixturenames", ()):
        tail = "".join(_RUNNING[-1].lines[-80:])
        report.sections.append(("skalds up (last 80 lines)", tail))


@pytest.fixture(scope="session")
def api(base_url: str) -> Iterator[httpx.Client]:
    """The REST API, authenticated: to set the scene, never to assert what the page shows."""
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless; missing: skipped locally, a failure under CI=true.

    Module-scoped on purpose: Playwright's sync API keeps an asyncio loop running on
    the main thread while it is open, which breaks ``asyncio.run`` in later tests.
    """
    require_service("chromium", CHROMIUM.exists(), str(CHROMIUM))
    playwright_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def new_page(browser: Any, base_url: str, width: int = 1280, height: int = 800) -> Any:
    """A page in a fresh context; page errors fail the test at teardown."""
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    """A page at 1280×800, not signed in."""
    page = new_page(browser, base_url)
    yield page
    errors = page.errors
    page.context.close()
    assert not errors, f"the page raised: {errors}"


def sign_in(page: Any, path: str = "/dashboard") -> Any:
    """Open ``path`` and sign in with the keyboard, as a person would."""
    page.goto(path)
    token = page.get_by_label("API token")
    playwright_api.expect(token).to_be_focused()
    token.fill(TOKEN)
    token.press("Enter")
    playwright_api.expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    playwright_api.expect(page.locator("#live")).to_have_text("● live")
    return page


@pytest.fixture
def signed_in(page: Any) -> Any:
    """A page signed in on the overview."""
    return sign_in(page)
