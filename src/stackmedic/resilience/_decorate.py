"""The decorator form shared by every primitive that has `call` and `call_async`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["Runner", "decorate"]


class Runner(Protocol):
    """Anything that runs a function for you, sync and async."""

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def call_async(self, func: Callable[..., Awaitable[Any]], /, *args: Any,
                         **kwargs: Any) -> Any: ...


def decorate(primitive: Runner, func: Callable[P, T]) -> Callable[P, T]:
    """Wrap `func` so each call goes through `primitive` (plain or `async def`)."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await primitive.call_async(func, *args, **kwargs)
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return primitive.call(func, *args, **kwargs)  # type: ignore[no-any-return]
    return wrapper
