"""Stopping background tasks (schedcp.runtime.tasks): a task that drops a cancellation, as a
nats-py request under Python 3.11's asyncio.wait_for can, still stops; one that never does is
named and left, without hanging the shutdown."""

import asyncio
import contextlib
import logging

from schedcp.runtime import tasks


async def test_a_task_that_drops_a_cancellation_is_cancelled_again_until_it_ends():
    dropped = []

    async def keeper() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if len(dropped) == 2:
                    raise
                dropped.append("cancel")  # as wait_for does when its call completes at that moment

    task = asyncio.create_task(keeper(), name="keeper")
    await asyncio.sleep(0)
    assert await tasks.stop([task, None], "test", timeout_s=5) == []
    assert task.cancelled() and dropped == ["cancel", "cancel"]


async def test_a_task_that_never_ends_is_named_and_left_within_the_bound(caplog):
    release = asyncio.Event()

    async def stuck() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(stuck(), name="stuck keeper")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await tasks.stop([task], "the test's tasks", timeout_s=0.5)
    assert not task.done()
    assert "the test's tasks: stuck keeper did not stop within 0.5 s" in caplog.text
    release.set()
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.done()


async def test_the_tasks_that_had_failed_are_returned():
    async def fails() -> None:
        raise RuntimeError("broken watcher")

    async def sleeps() -> None:
        await asyncio.sleep(3600)

    failed, sleeping = asyncio.create_task(fails(), name="watcher"), asyncio.create_task(sleeps())
    await asyncio.sleep(0.01)
    assert await tasks.stop([failed, sleeping], "test") == [failed]
    assert sleeping.cancelled()
