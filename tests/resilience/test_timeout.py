"""`timeout(seconds)`: TimeLimiter as a decorator and a context manager, sync and async."""

from __future__ import annotations

import asyncio
import time

import pytest

from stackmedic.resilience import OperationTimeoutError, timeout


async def sleep_for_ever(cancelled: list[bool]) -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise


def test_async_with_cancels_the_block_at_the_deadline() -> None:
    """`async with timeout(s):` cancels the block and raises OperationTimeoutError."""
    cancelled: list[bool] = []

    async def main() -> None:
        async with timeout(0.05):
            await sleep_for_ever(cancelled)

    with pytest.raises(OperationTimeoutError) as info:
        asyncio.run(main())
    assert cancelled == [True]
    assert (info.value.name, info.value.timeout) == ("timeout", 0.05)


def test_decorated_coroutines_are_cancelled_and_named_after_the_function() -> None:
    """`@timeout(s)` on an `async def` cancels it; the error names the function."""
    cancelled: list[bool] = []

    @timeout(0.05)
    async def search() -> None:
        await sleep_for_ever(cancelled)

    @timeout(30, name="quick")
    async def quick() -> int:
        return 7

    with pytest.raises(OperationTimeoutError) as info:
        asyncio.run(search())
    assert cancelled == [True]
    assert info.value.name.endswith("search")
    assert asyncio.run(quick()) == 7


def test_sync_code_runs_to_the_end_then_raises_if_it_overran() -> None:
    """Sync functions and `with` blocks are not interrupted: they finish, then raise."""
    finished: list[str] = []

    @timeout(0.01)
    def report() -> str:
        time.sleep(0.05)
        finished.append("report")
        return "late"

    with pytest.raises(OperationTimeoutError):
        report()
    with pytest.raises(OperationTimeoutError), timeout(0.01, name="block"):
        time.sleep(0.05)
        finished.append("block")
    assert finished == ["report", "block"]
    assert timeout(30)(lambda: 1)() == 1


def test_one_timeout_guards_one_block_at_a_time() -> None:
    """Reused one block after another it works; entered twice at once it refuses."""
    limit = timeout(30)

    async def main() -> None:
        async with limit:
            pass
        async with limit:
            with pytest.raises(RuntimeError, match="already in use"):
                async with limit:
                    pass

    asyncio.run(main())


def test_a_timeout_error_of_the_block_itself_is_not_ours() -> None:
    """A TimeoutError raised inside the block (a socket's, say) before the deadline stays
    what it is: it is not reported as this limit expiring."""
    async def main() -> None:
        async with timeout(5):
            raise TimeoutError("socket read timed out")

    with pytest.raises(TimeoutError, match="socket read") as info:
        asyncio.run(main())
    assert not isinstance(info.value, OperationTimeoutError)
