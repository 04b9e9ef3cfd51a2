"""What the Rust layer runs on the asyncio event loop to call a callback of an
``*_async`` method: sync and ``async def`` callbacks alike then run on the loop's
thread, in the caller's context (contextvars), one event at a time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# Set while a callback of an ``*_async`` call runs: a change made from inside
# it (a put awaiting pads while its caller holds the expansion turn) would
# wait on its own caller for ever, so the Rust layer refuses it, as it does
# for the sync methods' callbacks.
_IN_CALLBACK: ContextVar[bool] = ContextVar("anthill_in_callback", default=False)


def in_callback() -> bool:
    """Whether this code runs inside a callback of an ``*_async`` call."""
    return _IN_CALLBACK.get()


async def call_on_loop(callback: Callable[[Any], Any], event: Any) -> Any:
    token = _IN_CALLBACK.set(True)
    try:
        result = callback(event)
        if inspect.isawaitable(result):
            result = await result
        return result
    finally:
        _IN_CALLBACK.reset(token)
