"""Warnings of a background loop's failures, one outage at a time.

A loop that fails at each round while the database is down or refuses
writes (the heartbeat, the dequeuer, the waker, the maintenance thread) logs
its first failure at once, then at most one line every ``REPEAT_SECONDS``
saying how many failed meanwhile, and one line when it works again: an
hour's outage is a few dozen lines, not tens of thousands, and the log says
when it ended. A loop that never says it works again (``succeeded``) starts a
new outage at a failure ``every`` seconds or more after the last. An error
that is not relos's (a bug) comes with its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from relos import errors

logger = logging.getLogger("relos")

#: Seconds between two warnings of the same loop's failures.
REPEAT_SECONDS = 60.0


class FailureLog:
    """The failures of one loop (used by that loop's thread only)."""

    def __init__(self, what: str, *, every: float = REPEAT_SECONDS,
                 now: Callable[[], float] = time.monotonic,
                 first: str = "{about} failed: {exc}",
                 again: str = "{about} still failing, {n} more times in the last {secs:.0f} s: "
                              "{exc}") -> None:
        self.what = what
        self.every = every
        self._now = now
        #: The lines logged (``str.format`` of about, exc, and for ``again``
        #: n and secs): the first failure's, and each later one's.
        self._first, self._again = first, again
        self._failed_at = 0.0
        #: When the failures began, when the last line about them was logged,
        #: and how many there were since that line and in all.
        self._since: float | None = None
        self._logged_at = 0.0
        self._unlogged = 0
        self._count = 0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, detail: str = "") -> None:
        """A round failed with ``exc`` (``detail``: what it was doing, if the
        loop's name does not say)."""
        now = self._now()
        if self._since is not None and now - self._failed_at >= self.every:
            self._since, self._unlogged, self._count = None, 0, 0  # (a new outage)
        self._failed_at = now
        self._count += 1
        about = f"{self.what} ({detail})" if detail else self.what
        if self._since is None:
            self._since = now
            text = self._first.format(about=about, exc=exc)
        elif now - self._logged_at >= self.every:
            text = self._again.format(about=about, exc=exc, n=self._unlogged + 1,
                                      secs=now - self._logged_at)
        else:
            self._unlogged += 1
            return
        self._logged_at, self._unlogged = now, 0
        if isinstance(exc, errors.RelosError):
            logger.warning("%s", text)
        else:
            logger.error("%s", text, exc_info=exc)

    def succeeded(self) -> None:
        """A round went through: the end of the failures, if there were any."""
        if self._since is None:
            return
        logger.warning("%s works again, after %d failures in %.1f s", self.what, self._count,
                       self._now() - self._since)
        self._since, self._unlogged, self._count = None, 0, 0
