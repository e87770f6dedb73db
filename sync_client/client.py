"""Talking to central: one requests session, timeouts, retries with exponential backoff and jitter, and
one error path that turns every failure into a plain sentence and an exit code."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from sync_client import __version__
from sync_client.config import SyncConfig

log = logging.getLogger(__name__)


class ExitCode:
    OK = 0
    ERROR = 1  # unexpected failure (a bug, a damaged hub store)
    USAGE = 2  # bad command line or configuration
    UNREACHABLE = 3  # central could not be reached: try again later
    REFUSED_TOKEN = 4  # central refused the hub's token
    INCOMPLETE = 5  # finished, but some submissions are not at central (see the report)


class SyncError(Exception):
    """A failure explained for a coordinator, with the exit code it ends the command with."""

    def __init__(self, message: str, exit_code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class CentralRefused(SyncError):
    """Central answered with an error (4xx) that retrying will not fix."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"central refused the request: {message}", ExitCode.ERROR)
        self.status = status
        self.code = code
        self.details = details


_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class Traffic:
    """Bytes and requests sent, for the progress line and the ledger."""

    requests: int = 0
    bytes_sent: int = 0
    retries: int = 0


@dataclass
class CentralClient:
    config: SyncConfig
    sleep: Callable[[float], None] = time.sleep
    traffic: Traffic = field(default_factory=Traffic)
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["User-Agent"] = f"sarhad-sync/{__version__}"
        if self.config.token:
            self.session.headers["Authorization"] = f"Bearer {self.config.token}"

    def url(self, path: str) -> str:
        return self.config.central_url + path

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: spreads hubs that all come back at once."""
        cap = min(self.config.backoff_max_seconds, self.config.backoff_seconds * (2**attempt))
        return random.uniform(cap / 2, cap)

    def request(self, method: str, path: str, *, retry: bool = True, raw: bool = False, **kwargs: Any) -> Any:
        """JSON answer of a request; transient failures retried, others raised as SyncError."""
        kwargs.setdefault("timeout", (self.config.connect_timeout, self.config.read_timeout))
        body = kwargs.get("data") if kwargs.get("data") is not None else b""
        attempts = self.config.retries + 1 if retry else 1
        last: str = ""
        for attempt in range(attempts):
            if attempt:
                self.traffic.retries += 1
                self.sleep(self.backoff(attempt - 1))
            self.traffic.requests += 1
            self.traffic.bytes_sent += len(body) if isinstance(body, bytes | bytearray) else 0
            try:
                response = self.session.request(method, self.url(path), **kwargs)
                if response.status_code in _RETRYABLE_STATUS:
                    last = f"central answered {response.status_code}"
                    continue
                if raw and response.status_code < 400:
                    return response.content
                return self._answer(response)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last = _network_reason(exc)
                log.debug("%s %s failed (%s), attempt %d", method, path, last, attempt + 1)
                continue
            except ValueError:  # a truncated JSON body: the reply was cut
                last = "central's answer was cut off"
                continue
        raise SyncError(
            f"could not reach central at {self.config.central_url} ({last}); "
            "check the link and try again later — nothing is lost, the next run continues where this stopped",
            ExitCode.UNREACHABLE,
        )

    def _answer(self, response: requests.Response) -> Any:
        if response.status_code < 400:
            return response.json()
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        code = str(problem.get("code", response.status_code))
        message = str(problem.get("message", response.reason))
        details = problem.get("details") or {}
        if response.status_code == 401:
            raise SyncError(
                f"central refused the hub's token ({message}): ask the administrator to re-issue it "
                "(sarhad hub create) and set it as SARHAD_SYNC_TOKEN",
                ExitCode.REFUSED_TOKEN,
            )
        if response.status_code == 403:
            raise SyncError(
                f"central does not let this hub do that ({message}): ask the administrator to add the "
                "project to the hub",
                ExitCode.REFUSED_TOKEN,
            )
        raise CentralRefused(response.status_code, code, message, details)

    def download(self, path: str) -> bytes:
        """The raw bytes of a GET (form media: small files), with the same retries."""
        return self.request("GET", path, raw=True)  # type: ignore[no-any-return]

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection was cut during the answer"
    return "connection failed or was cut"
