"""Where the loop's Argilla connection comes from: the configured URL/key, else the local stack's state."""

from __future__ import annotations

from pathlib import Path

from loop.config import Config
from storage.errors import PvarLoopError


class ArgillaConfigError(PvarLoopError, ValueError):
    """No usable Argilla connection is configured; the message says how to get one."""


def stack_root(cfg: Config) -> Path:
    return Path(cfg.paths.data_dir) / "argilla"


def argilla_target(cfg: Config) -> tuple[str, str]:
    """(url, owner api key): configured, else the local stack's state file."""
    from annotation.stack.local_stack import STATE_FILE, ArgillaStackError, load_stack

    if cfg.argilla.api_key is not None and cfg.argilla.api_key.get_secret_value():
        return cfg.argilla.url, cfg.argilla.api_key.get_secret_value()
    root = stack_root(cfg)
    if (root / STATE_FILE).exists():
        try:
            info = load_stack(root)
        except ArgillaStackError as e:
            raise ArgillaConfigError(str(e)) from e
        if info.stopped:
            raise ArgillaConfigError(
                f"the local Argilla stack under {root} is stopped (its data is kept): `pvar-loop argilla up`"
            )
        return info.url, info.api_key
    raise ArgillaConfigError(
        "no Argilla API key: set PVAR_LOOP_ARGILLA_API_KEY (and PVAR_LOOP_ARGILLA_URL) or [argilla] api_key, "
        "or start a local server with `pvar-loop argilla up`"
    )


def connect_client(cfg: Config):
    from annotation.api import connect

    url, key = argilla_target(cfg)
    return connect(url, key)


def connect_dataset(cfg: Config, min_submitted: int | None = None):
    """The configured preference dataset, created on first use, its overlap set to `min_submitted` (the
    collecting round's; default `[argilla] min_submitted`)."""
    from annotation.dataset import ensure_dataset

    a = cfg.argilla
    overlap = a.min_submitted if min_submitted is None else min_submitted
    return ensure_dataset(connect_client(cfg), a.dataset, a.workspace, overlap, markdown=a.markdown)
