"""all_or_cancel: side-by-side coroutines of which none outlives a failure."""

from __future__ import annotations

import asyncio

import pytest

from zos_upgrade.tasks import all_or_cancel


def test_results_come_in_the_order_given() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert asyncio.run(all_or_cancel([after(0.03, 1), after(0.0, 2), after(0.01, 3)])) == [1, 2, 3]


def test_a_failure_cancels_the_others_and_waits_for_them_before_raising() -> None:
    finished: list[str] = []

    async def slow(name: str) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.01)  # clean-up that takes a moment: it must be over before the raise
            finished.append(name)

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def scenario() -> list[asyncio.Task[object]]:
        with pytest.raises(ValueError, match="boom"):
            await all_or_cancel([slow("a"), failing(), slow("b")])
        assert sorted(finished) == ["a", "b"]
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(scenario()) == []


def test_cancelling_the_caller_cancels_every_one() -> None:
    cancelled: list[int] = []

    async def waits(index: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(index)
            raise

    async def scenario() -> None:
        caller = asyncio.create_task(all_or_cancel([waits(0), waits(1)]))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller

    asyncio.run(scenario())
    assert sorted(cancelled) == [0, 1]
