"""A clock for tests of code that takes its clock as an argument."""

from __future__ import annotations


class ManualClock:
    """A monotonic clock that moves only when the test moves it (``t``)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
