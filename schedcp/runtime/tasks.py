"""Stopping background tasks for sure.

One cancel is not always enough: on Python 3.11 `asyncio.wait_for` (under every nats-py request,
KV read and JetStream publish) drops a cancellation that arrives just as the call it waits for
completes (fixed in 3.12), and a loop around such a call then goes on as if never cancelled. A
planner stopping while its lease keeper renewed a lease awaited that task forever. So tasks are
cancelled again until they end, within a bound, and what would not stop is named in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

CANCEL_AGAIN_S = 0.2
STOP_TIMEOUT_S = 10.0


async def stop(tasks: Iterable[asyncio.Task | None], what: str,
               timeout_s: float = STOP_TIMEOUT_S) -> list[asyncio.Task]:
    """Cancel `tasks` (None entries and the caller's own task are skipped) until every one has
    ended, for at most `timeout_s`; one that would not end is logged (`what` says whose they
    are) and left. Returns those that had ended with an error, their errors retrieved."""
    current = asyncio.current_task()
    tasks = [task for task in tasks if task is not None and task is not current]
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + timeout_s
    while pending and (left := deadline - time.monotonic()) > 0:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_AGAIN_S, left))
    if pending:
        log.warning("%s: %s did not stop within %g s (left running)", what,
                    ", ".join(sorted(task.get_name() for task in pending)), timeout_s)
    return [task for task in tasks if task.done() and not task.cancelled() and task.exception() is not None]
