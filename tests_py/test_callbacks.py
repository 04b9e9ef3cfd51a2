"""Callbacks: any callable, sync and async, their answers and their exceptions."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import warnings
from typing import Any

import anthill
import pytest
from anthill import ConfirmReservation, StoreComplete
from conftest import Recorder, settle_interrupted


class CallableObject:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: object) -> bool:
        self.count += 1
        return True


class WithMethod:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_event(self, event: object) -> None:
        self.events.append(event)


def test_function_lambda_object_and_bound_method(store: anthill.Store) -> None:
    names: list[str] = []

    def function(event: object) -> None:
        names.append(type(event).__name__)

    store.store_item("f", b"f" * 5000, callback=function)
    assert names[-1] == "StoreComplete"

    store.store_item("l", b"l", callback=lambda event: None)

    obj = CallableObject()
    store.store_item("o", b"o" * 5000, callback=obj)
    assert obj.count > 3

    holder = WithMethod()
    store.store_item("m", b"m", callback=holder.on_event)
    assert isinstance(holder.events[-1], StoreComplete)
    store.fetch_item("m", callback=holder.on_event)
    assert isinstance(holder.events[-1], anthill.DownloadFinished)


def test_returning_false_cancels_and_true_or_none_continue(store: anthill.Store) -> None:
    store.store_item("yes", b"y", callback=lambda e: True)
    store.store_item("none", b"n", callback=lambda e: None)
    with pytest.raises(anthill.OperationCancelledError):
        store.store_item("no", b"x" * 5000, callback=lambda e: False)
    assert "no" not in store
    # Cancelling a get.
    with pytest.raises(anthill.OperationCancelledError):
        store.fetch_item("yes", callback=lambda e: False)


def test_cancelling_midway_leaves_the_key_absent_and_the_store_usable(store: anthill.Store) -> None:
    def stop_at_first_commit(event: object) -> bool:
        return not isinstance(event, anthill.ScratchpadCommitComplete)

    with pytest.raises(anthill.OperationCancelledError):
        store.store_item("k", b"k" * 20000, callback=stop_at_first_commit)
    settle_interrupted(store, "k")
    store.store_item("k", b"again", overwrite=False)
    assert store["k"] == b"again"


@pytest.mark.parametrize("answer", [0, 1, "yes", [], object()])
def test_other_answers_are_invalid(store: anthill.Store, answer: object) -> None:
    with pytest.raises(anthill.InvalidInputError, match="callback must return True, False or None"):
        store.store_item("k", b"k", callback=lambda e: answer)
    assert "k" not in store


def test_a_non_callable_callback_is_invalid(store: anthill.Store) -> None:
    with pytest.raises(anthill.InvalidInputError, match="callable"):
        store.store_item("k", b"k", callback=42)  # type: ignore[arg-type]


def test_callback_exception_propagates_unchanged(store: anthill.Store) -> None:
    class MyError(Exception):
        pass

    raised: list[MyError] = []

    def failing(event: object) -> None:
        if isinstance(event, anthill.UploadProgress):
            error = MyError("stop here")
            raised.append(error)
            raise error

    with pytest.raises(MyError) as caught:
        store.store_item("k", b"k" * 9000, callback=failing)
    assert caught.value is raised[0]
    # The traceback reaches into the callback.
    assert any(frame.name == "failing" for frame in caught.traceback)
    # The store stays consistent and usable.
    settle_interrupted(store, "k")
    assert store.summary().used_space == 0
    store.store_item("k", b"fine")
    assert store["k"] == b"fine"
    assert store.summary().items == 1


def test_callback_exception_at_confirmation_spends_nothing(sim_store: anthill.Store) -> None:
    def refuse(event: object) -> None:
        if isinstance(event, ConfirmReservation):
            raise KeyboardInterrupt  # even BaseExceptions come back as they are

    with pytest.raises(KeyboardInterrupt):
        sim_store.store_item("k", b"k" * 9000, callback=refuse)
    stats = sim_store.backend_stats()
    assert stats is not None and stats.pads_reserved == 0


def test_get_callback_exception_propagates(store: anthill.Store) -> None:
    store["k"] = b"v"
    error = ValueError("reader says no")

    def failing(event: object) -> None:
        raise error

    with pytest.raises(ValueError) as caught:
        store.fetch_item("k", callback=failing)
    assert caught.value is error


def test_async_callback_on_sync_method_is_refused_without_warning(store: anthill.Store) -> None:
    async def async_callback(event: object) -> None:
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(anthill.InvalidInputError, match="_async"):
            store.store_item("k", b"k", callback=async_callback)
    assert "k" not in store


# --- the async API ---------------------------------------------------------------


async def test_async_methods_with_sync_async_and_object_callbacks(store: anthill.Store) -> None:
    recorder = Recorder()
    await store.store_item_async("sync", b"s" * 5000, callback=recorder)
    assert recorder.names()[-1] == "StoreComplete"

    seen: list[str] = []

    async def async_callback(event: object) -> bool:
        await asyncio.sleep(0)
        seen.append(type(event).__name__)
        return True

    await store.store_item_async("async", b"a" * 5000, callback=async_callback)
    assert seen[0] == "ConfirmReservation" or seen[0] == "StartingUpload"
    assert seen[-1] == "StoreComplete"

    obj = CallableObject()
    await store.store_item_async("object", b"o", callback=obj)
    assert obj.count > 0

    got: list[str] = []

    async def on_get(event: object) -> None:
        got.append(type(event).__name__)

    assert await store.fetch_item_async("async", callback=on_get) == b"a" * 5000
    assert got[0] == "StartingDownload" and got[-1] == "DownloadFinished"
    await store.remove_item_async("async")
    assert "async" not in store
    summary = await store.summary_async()
    assert summary.items == 2
    assert await store.check_allocation_possible_async(1) is None


async def test_async_callbacks_run_on_the_event_loop_in_the_callers_context(
    store: anthill.Store,
) -> None:
    request = contextvars.ContextVar("request", default="none")
    request.set("req-42")
    loop_thread = threading.get_ident()
    contexts: set[str] = set()
    threads: set[int] = set()

    def sync_callback(event: object) -> None:
        contexts.add(request.get())
        threads.add(threading.get_ident())
        asyncio.get_running_loop()  # callable only on the loop's thread

    await store.store_item_async("k", b"k" * 9000, callback=sync_callback)
    assert contexts == {"req-42"}
    assert threads == {loop_thread}


async def test_async_callback_answers(store: anthill.Store) -> None:
    async def decline(event: object) -> bool:
        return not isinstance(event, ConfirmReservation)

    with pytest.raises(anthill.OperationCancelledError):
        await store.store_item_async("k", b"k" * 5000, callback=decline)

    async def bad(event: object) -> Any:
        return "maybe"

    with pytest.raises(anthill.InvalidInputError):
        await store.store_item_async("k", b"k", callback=bad)
    assert "k" not in store


async def test_async_callback_exception_propagates_unchanged(store: anthill.Store) -> None:
    error = RuntimeError("async boom")

    async def failing(event: object) -> None:
        await asyncio.sleep(0)
        if isinstance(event, anthill.UploadProgress):
            raise error

    with pytest.raises(RuntimeError) as caught:
        await store.store_item_async("k", b"k" * 9000, callback=failing)
    assert caught.value is error
    settle_interrupted(store, "k")
    await store.store_item_async("k", b"ok")
    assert await store.fetch_item_async("k") == b"ok"


async def test_gather_many_puts_with_async_callbacks(store: anthill.Store) -> None:
    events: dict[str, list[str]] = {}

    def callback_for(key: str) -> Any:
        events[key] = []

        async def callback(event: object) -> None:
            await asyncio.sleep(0)
            events[key].append(type(event).__name__)

        return callback

    values = {f"item-{i}": bytes([i]) * (700 * i + 1) for i in range(32)}
    await asyncio.gather(
        *(
            store.store_item_async(key, value, callback=callback_for(key))
            for key, value in values.items()
        )
    )
    for key in values:
        assert events[key][-1] == "StoreComplete", key
        assert events[key].count("StoreComplete") == 1
    fetched = await asyncio.gather(*(store.fetch_item_async(key) for key in values))
    assert dict(zip(values, fetched)) == values
    summary = store.summary()
    assert summary.items == 32
    assert summary.used_space == sum(len(v) for v in values.values())


async def test_cancelling_the_asyncio_task_leaves_the_store_usable(make_store: Any) -> None:
    slow = make_store("sim+memory://", pad_size=4096)
    # Each call takes 100 ms: the put is cancelled once it starts uploading,
    # well before its last call ends.
    slow = make_store(f"sim+memory://slow-{id(slow)}?latency_ms=100")
    uploading = asyncio.Event()

    async def watch(event: anthill.PutEvent) -> None:
        if isinstance(event, anthill.StartingUpload):
            uploading.set()

    task = asyncio.ensure_future(slow.store_item_async("k", b"k" * 40000, callback=watch))
    await uploading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The Rust future is dropped on a tokio thread just after the asyncio
    # task is cancelled; until then the key is busy.
    for _ in range(500):
        try:
            await slow.store_item_async("probe", b"p")
            await slow.remove_item_async("probe")
            settle_interrupted(slow, "k")
            await slow.store_item_async("k", b"again")
            break
        except anthill.UploadPendingError:
            await asyncio.sleep(0.01)
    else:
        raise AssertionError("the cancelled put never let go of its key")
    assert await slow.fetch_item_async("k") == b"again"
