"""Claims whose commit went unanswered.

A claim (the queue runner's dequeue, the waker's claim of due suspended
workflows) whose connection is lost before the answer may have committed: its
workflows would then be PENDING under this live process and run nowhere, as
no other process takes over the work of a live one. Each claim's ``now`` is
its own among the process's claims of its kind (``clock.stamp_ms``); the
claimer notes a claim that went unanswered, and before its next claim takes
what it took, found by that stamp and the owner (``SystemStore.find_claimed``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relos import errors

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime
    from relos.store.base import WorkflowRow

logger = logging.getLogger("relos")


class UnansweredClaims:
    """The unanswered claims of one claimer (used by its thread only)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: Per claim: its stamp, its queue (None: a wake-up) and the IDs the
        #: claimer holds from it anyway (the answered half of a split claim).
        self._claims: list[tuple[int, str | None, frozenset[str]]] = []

    def note(self, stamp: int, queue_name: str | None,
             held: frozenset[str] = frozenset()) -> None:
        """A claim stamped ``stamp`` went unanswered."""
        self._claims.append((stamp, queue_name, held))

    def take(self) -> list[tuple[str | None, list[WorkflowRow]]]:
        """The workflows the noted claims took, if they committed, by claim
        (its queue, the rows): the claimer's to start. The claims the
        database cannot be asked about yet stay noted for the next call."""
        rt, found = self.rt, []
        while self._claims:
            stamp, queue_name, held = self._claims[0]
            try:
                rows = [r for r in rt.store.find_claimed(rt.instance_id, rt.config.executor_id,
                                                         stamp, queue_name)
                        if r.workflow_id not in held]
            except errors.RelosError as exc:  # (still unreachable: the claim says so next)
                logger.debug("cannot yet ask what an unanswered claim took: %s", exc)
                break
            del self._claims[0]
            if rows:
                logger.warning("a claim%s whose commit went unanswered took %d workflow(s): "
                               "starting them", f" from queue {queue_name!r}" if queue_name
                               else " of suspended workflows", len(rows))
                found.append((queue_name, rows))
        return found
