"""What the Rust layer runs on the asyncio event loop to call a callback of an
``*_async`` method: sync and ``async def`` callbacks alike then run on the loop's
thread, in the caller's context (contextvars), one event at a time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


async def call_on_loop(callback: Callable[[Any], Any], event: Any) -> Any:
    result = callback(event)
    if inspect.isawaitable(result):
        result = await result
    return result
