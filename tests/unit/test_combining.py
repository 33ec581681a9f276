"""The combiner of concurrent writes (relos.store.combining): what waited
during a write is written together next, each caller gets its own results,
and a failed combined write is redone caller by caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from relos.store.combining import Combiner


class Recorder:
    """A write that records each call and can be held while it runs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str]:
        self.calls.append(list(items))
        self.entered.set()
        assert self.hold.wait(10)
        bad = [i for i in items if i.startswith("bad")]
        if bad:
            raise ValueError(f"refused {bad[0]}")
        return [i.upper() for i in items]


def _start(target: object, *args: object) -> threading.Thread:
    t = threading.Thread(target=target, args=args)  # type: ignore[arg-type]
    t.start()
    return t


def _wait_waiting(c: Combiner[str, str], n: int) -> None:
    deadline = time.monotonic() + 10
    while len(c._waiting) < n:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_lone_caller_writes_at_once() -> None:
    rec = Recorder()
    c = Combiner(rec)
    assert c.run(["a", "b"]) == ["A", "B"]
    assert c.run(["c"]) == ["C"]
    assert rec.calls == [["a", "b"], ["c"]]


def test_callers_arriving_during_a_write_are_written_together_next() -> None:
    rec = Recorder()
    c = Combiner(rec)
    results: dict[str, list[str]] = {}
    rec.hold.clear()
    first = _start(lambda: results.__setitem__("first", c.run(["x"])))
    assert rec.entered.wait(10)
    others = [_start(lambda k=k: results.__setitem__(k, c.run([f"{k}1", f"{k}2"])))
              for k in ("p", "q", "r")]
    _wait_waiting(c, 3)
    rec.hold.set()
    for t in [first, *others]:
        t.join(10)
    assert results == {"first": ["X"], "p": ["P1", "P2"], "q": ["Q1", "Q2"],
                       "r": ["R1", "R2"]}
    assert len(rec.calls) == 2
    assert rec.calls[0] == ["x"]
    assert sorted(rec.calls[1]) == ["p1", "p2", "q1", "q2", "r1", "r2"]


def test_a_failed_combined_write_fails_only_the_caller_that_caused_it() -> None:
    rec = Recorder()
    c = Combiner(rec)
    results: dict[str, object] = {}

    def call(k: str, items: list[str]) -> None:
        try:
            results[k] = c.run(items)
        except ValueError as exc:
            results[k] = str(exc)

    rec.hold.clear()
    first = _start(call, "first", ["x"])
    assert rec.entered.wait(10)
    others = [_start(call, "good1", ["g1"]), _start(call, "bad", ["b0", "bad1"]),
              _start(call, "good2", ["g2", "g3"])]
    _wait_waiting(c, 3)
    rec.hold.set()
    for t in [first, *others]:
        t.join(10)
    assert results == {"first": ["X"], "good1": ["G1"], "bad": "refused bad1",
                       "good2": ["G2", "G3"]}
    # The combined write, then each of its callers alone.
    assert len(rec.calls) == 5
    assert sorted(rec.calls[1]) == ["b0", "bad1", "g1", "g2", "g3"]


def test_an_error_of_a_lone_caller_is_raised_and_the_combiner_goes_on() -> None:
    c = Combiner(Recorder())
    with pytest.raises(ValueError, match="refused bad"):
        c.run(["bad"])
    assert c.run(["ok"]) == ["OK"]
