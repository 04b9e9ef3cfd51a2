"""How `*_async` calls reach their event loop: the core completes them in
batches through one bridge per loop (``EventLoopBridge``); a cancelled caller
drops the core's call; loops without ``add_reader`` and loops in other threads
work the same."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthill
import pytest
from anthill import _store
from conftest import settle_interrupted


async def round_trip(store: anthill.Store, prefix: str, count: int = 50) -> None:
    """Gathered puts, gets and removes of keys under ``prefix``, and an error."""
    values = {f"{prefix}/{i}": f"{prefix}-{i}".encode() * (i + 1) for i in range(count)}
    await asyncio.gather(*(store.store_item_async(k, v) for k, v in values.items()))
    fetched = await asyncio.gather(*(store.fetch_item_async(k) for k in values))
    assert dict(zip(values, fetched)) == values
    with pytest.raises(anthill.KeyNotFoundError):
        await store.fetch_item_async(f"{prefix}/missing")
    await asyncio.gather(*(store.remove_item_async(k) for k in values))
    assert not any(key.startswith(f"{prefix}/") for key in store)
    assert (await store.summary_async()).pending == 0


async def test_cancelling_a_call_without_callback_drops_the_core_call(make_store: Any) -> None:
    # Each backend call takes 100 ms, so the put of 10 pads is still running
    # when it is cancelled. Were it not dropped it would go on and commit "k".
    slow = make_store("sim+memory://", pad_size=4096)
    slow = make_store(f"sim+memory://slow-{id(slow)}?latency_ms=100", pad_size=4096)
    task = asyncio.ensure_future(slow.store_item_async("k", b"k" * 40000))
    await asyncio.sleep(0)  # the task starts the core's put and waits for it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # This put waits for the writer lock, which the cancelled put held.
    await slow.store_item_async("after", b"a")
    settle_interrupted(slow, "k")
    assert await slow.fetch_item_async("after") == b"a"


class LoopWithoutReaders(asyncio.SelectorEventLoop):
    """A loop that cannot watch file descriptors, as Windows' proactor loop."""

    def add_reader(self, *args: Any) -> None:
        raise NotImplementedError


def test_a_loop_without_add_reader_is_woken_by_call_soon_threadsafe(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store()
    loop = LoopWithoutReaders()
    try:
        loop.run_until_complete(round_trip(store, "no-reader"))
    finally:
        loop.close()


def test_loops_in_several_threads_share_one_store(
    make_store: Callable[..., anthill.Store],
) -> None:
    store = make_store()

    def run(prefix: str) -> None:
        asyncio.run(round_trip(store, prefix))

    with ThreadPoolExecutor(4) as threads:
        # result() raises what a thread raised.
        for done in [threads.submit(run, f"t{n}") for n in range(4)]:
            done.result()
    assert len(store) == 0


def test_a_closed_loop_leaves_no_bridge_behind(make_store: Callable[..., anthill.Store]) -> None:
    store = make_store()
    gc.collect()
    before = len(_store._bridges)
    for n in range(3):
        asyncio.run(round_trip(store, f"run{n}", count=5))
    gc.collect()
    # Each asyncio.run made a loop and a bridge; the bridges went with the loops.
    assert len(_store._bridges) <= before
