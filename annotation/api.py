"""The one HTTP boundary to Argilla: a connected SDK client, bounded retries with exponential backoff, and
AnnotationSyncError for everything that still fails (the original error chained, its message kept).

Only transport failures (refused/reset connections, timeouts) and gateway answers (502/503/504) are retried:
they are what a restarting or briefly overloaded server produces. Any other HTTP error is final. A request
that is not idempotent (POST that creates) is retried only when it cannot have reached the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from storage.errors import PvarLoopError

_LOG = logging.getLogger(__name__)
RETRY_STATUS = frozenset({502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "PATCH"})  # PATCH: ours only set fields
TIMEOUT_S = 120  # a 500-record bulk upsert on a loaded 2-core machine takes seconds, not minutes


class AnnotationSyncError(PvarLoopError, RuntimeError):
    """Argilla could not be reached or refused a request; `status_code` is the HTTP status, if any."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential backoff: `attempts` tries in all, waiting base, 2*base, ... (at most `cap`)."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Backoff.attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("Backoff.base_s and Backoff.cap_s must be >= 0")

    def delays(self) -> Iterator[float]:
        """The waits between attempts (attempts - 1 of them)."""
        for i in range(self.attempts - 1):
            yield min(self.base_s * 2**i, self.cap_s)


DEFAULT_BACKOFF = Backoff()


class SdkLoginFilter(logging.Filter):
    """The Argilla SDK logs "Argilla: Logged in as ..." through the ROOT logger at INFO on every connect (each
    scheduler poll and tick): no logger level can reach it, so this filter on the root logger moves it to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.getMessage().startswith("Argilla: Logged in as "):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_sdk_login() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, SdkLoginFilter) for f in root.filters):
        root.addFilter(SdkLoginFilter())


def connect(url: str, api_key: str, *, timeout: int = TIMEOUT_S, backoff: Backoff = DEFAULT_BACKOFF):
    """An `argilla.Argilla` client whose key was checked against the server (GET /api/v1/me).

    The SDK's own transport retries are switched off: `request` is the single retry policy.
    """
    import argilla as rg
    from argilla._exceptions import ArgillaCredentialsError, ArgillaError

    quiet_sdk_login()
    last: Exception | None = None
    for delay in [*backoff.delays(), None]:
        try:
            return rg.Argilla(api_url=url, api_key=api_key, timeout=timeout, retries=0)
        except ArgillaCredentialsError as e:
            raise AnnotationSyncError(f"Argilla at {url} rejected the API key: {e}", 401) from e
        except httpx.TransportError as e:
            last = e
        except ArgillaError as e:
            raise AnnotationSyncError(f"Argilla at {url}: {e}", getattr(e, "status_code", None)) from e
        if delay is not None:
            time.sleep(delay)
    raise AnnotationSyncError(
        f"Argilla at {url} unreachable after {backoff.attempts} attempts: {last!r}"
    ) from last


def request(
    http: httpx.Client,
    method: str,
    path: str,
    *,
    what: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    ok: tuple[int, ...] = (200, 201, 204),
    idempotent: bool | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One API call with bounded retries. `what` names the operation in the error message; `idempotent`
    (default: by method) allows retrying after failures the server may have seen the request through."""
    retry_all = method.upper() in IDEMPOTENT if idempotent is None else idempotent
    last: Exception | None = None
    status: int | None = None
    attempts = 0
    for delay in [*backoff.delays(), None]:
        attempts += 1
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            last, status = e, None
            if not retry_all and not isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
                break  # the server may have processed it: do not send it twice
        else:
            if response.status_code in ok:
                return response
            status = response.status_code
            # 503 means "not processed"; 502/504 may come after processing, like a read timeout.
            if status not in RETRY_STATUS or not (retry_all or status == 503):
                raise AnnotationSyncError(
                    f"{what}: Argilla answered {status} to {method} {path}: {_detail(response)}", status
                )
            last = RuntimeError(f"HTTP {status}: {_detail(response)}")
        if delay is not None:
            _LOG.warning("%s: %s; retrying in %.1f s", what, last, delay)
            time.sleep(delay)
    raise AnnotationSyncError(
        f"{what}: Argilla at {http.base_url} failed after {attempts} attempt(s): {last!r}", status
    ) from last


def request_json(http: httpx.Client, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
    response = request(http, method, path, what=what, **kwargs)
    try:
        return response.json()
    except ValueError as e:
        raise AnnotationSyncError(f"{what}: Argilla answered non-JSON: {response.text[:300]!r}") from e


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:500]
