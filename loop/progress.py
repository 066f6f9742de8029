"""Progress of long work (scoring, evaluation): a tqdm bar on a terminal, a periodic log line elsewhere.

A bar redrawn with carriage returns is one garbled line per redraw in a log file (the scheduler's log, CI), so
when stderr is not a terminal the same updates become an INFO line at most every `every_s` seconds.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0


def is_terminal() -> bool:
    return sys.stderr.isatty()


class LogProgress:
    """tqdm's update/set_postfix/context-manager surface, written as a log line every `every_s` seconds."""

    def __init__(self, total: int, desc: str, unit: str, every_s: float = LOG_EVERY_S, logger=log) -> None:
        self.total, self.desc, self.unit, self.every_s, self.logger = total, desc, unit, every_s, logger
        self.n = 0
        self.start = self.last = time.monotonic()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.n / max(now - self.start, 1e-9)
            share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            self.logger.info(
                "%s: %d/%d %ss%s, %.2f %ss/s",
                self.desc,
                self.n,
                self.total,
                self.unit,
                share,
                rate,
                self.unit,
            )

    def set_postfix(self, **_kwargs) -> None:
        """The bar's live rates; the periodic line computes its own."""

    def close(self) -> None:
        """Nothing to tear down: the caller logs its own summary when the work ends."""


class _Off(LogProgress):
    def update(self, n: int = 1) -> None:
        self.n += n


def progress(total: int, desc: str, unit: str, *, enabled: bool = True, every_s: float | None = None):
    """A bar on a terminal, else periodic log lines; `enabled=False` (e.g. `--no-progress`): neither."""
    if not enabled:
        return _Off(total, desc, unit)
    if is_terminal():
        from tqdm import tqdm

        # disable=False: our bars stay when TQDM_DISABLE quiets the libraries' (loop.cli.app)
        return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=False)
    return LogProgress(total, desc, unit, LOG_EVERY_S if every_s is None else every_s)
