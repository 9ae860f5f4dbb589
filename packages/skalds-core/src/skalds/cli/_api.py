"""A small client of the controller's REST API for the ``skalds task`` commands.

It needs ``httpx`` (installed with ``skalds[controller]``), imported only when a task
command runs, so the node commands work without it. API errors keep the API's error
model (``code``, message, details) so the command can show them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from skalds.errors import MissingExtraError, SkaldsError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_URL",
    "EXIT_REJECTED",
    "EXIT_TASK_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "ApiClient",
    "ApiRejectedError",
    "ApiUnreachableError",
]

DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_REJECTED = 1
"""The API refused the request (unknown task, invalid attachments, wrong status...)."""
EXIT_USAGE = 2
"""The command line is wrong (argparse's code too)."""
EXIT_UNREACHABLE = 3
"""The API cannot be reached, or failed (5xx)."""
EXIT_TASK_FAILED = 4
"""``--wait``: the task ended Failed or Cancelled."""
EXIT_TIMEOUT = 5
"""``--wait``: the task did not get there within ``--timeout``."""


class ApiRejectedError(SkaldsError):
    """The API answered with its error model: ``status``, ``code``, ``error``, ``detail``."""

    def __init__(self, status: int, code: str, error: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {error}")
        self.status = status
        self.code = code
        self.error = error
        self.detail = detail


class ApiUnreachableError(SkaldsError):
    """No answer from the API (not running, wrong URL, timeout), or a server failure."""


def _error_from(response: httpx.Response) -> SkaldsError:
    """The error a non-2xx response stands for (the API's model, else the raw text)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "code" in body and "error" in body:
        error: SkaldsError = ApiRejectedError(
            response.status_code, str(body["code"]), str(body["error"]), body.get("detail")
        )
    else:
        text = response.text.strip()[:300] or response.reason_phrase
        error = ApiRejectedError(response.status_code, f"HTTP_{response.status_code}", text)
    if response.status_code >= 500:
        return ApiUnreachableError(f"the controller failed ({response.status_code}): {error}")
    return error


class ApiClient:
    """Calls the API at ``url`` with an optional bearer token; one connection, reused."""

    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 10.0
    ) -> None:
        """Connect lazily to ``url``.

        Raises:
            MissingExtraError: httpx is not installed.
        """
        try:
            import httpx
        except ImportError as exc:
            raise MissingExtraError("Controller client", "controller") from exc
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (None for an empty one).

        Raises:
            ApiRejectedError: a 4xx answer.
            ApiUnreachableError: no answer, or a 5xx one.
        """
        try:
            response = self._client.request(
                method, path, json=json_body, params=_clean(params) if params else None
            )
        except self._httpx.TimeoutException:
            raise ApiUnreachableError(
                f"the controller at {self.url} did not answer in time"
            ) from None
        except self._httpx.TransportError as exc:
            raise ApiUnreachableError(
                f"cannot reach the controller at {self.url} ({exc or type(exc).__name__}); "
                "is it running? Start one with: skalds up"
            ) from None
        if response.status_code >= 400:
            raise _error_from(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def stream_lines(self, path: str, params: dict[str, Any] | None = None) -> Iterator[str]:
        """The lines of a streamed response (``?follow=true``), as they arrive.

        Raises:
            ApiRejectedError: a 4xx answer.
            ApiUnreachableError: no answer, or a 5xx one.
        """
        try:
            with self._client.stream(
                "GET", path, params=_clean(params) if params else None, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                yield from response.iter_lines()
        except self._httpx.TransportError as exc:
            raise ApiUnreachableError(
                f"lost the connection to the controller at {self.url} ({exc})"
            ) from None


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as ``true``/``false``."""
    return {
        k: json.dumps(v) if isinstance(v, bool) else v for k, v in params.items() if v is not None
    }
