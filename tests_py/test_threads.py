"""The GIL is released while Rust works; several threads may share a store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anthill
from conftest import PAD_SIZE


def test_another_thread_runs_during_a_slow_put(make_store: Callable[..., anthill.Store]) -> None:
    # Every backend call takes 50 ms: the put below takes a few hundred ms.
    store = make_store(
        f"sim+memory://slow-{id(make_store)}?latency_ms=50",
        reservation_concurrency=1,
        upload_concurrency=1,
    )
    started = threading.Event()
    stop = threading.Event()
    iterations = 0

    def spin() -> None:
        nonlocal iterations
        started.set()
        while not stop.is_set():
            iterations += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    started.wait()
    try:
        before = iterations
        store.store_item("k", b"k" * (4 * PAD_SIZE))
        during = iterations - before
    finally:
        stop.set()
        spinner.join()
    # With the GIL held for the whole put the spinner would get a handful of
    # switch intervals at most; released, it loops freely.
    assert during > 100_000, during
    assert store["k"] == b"k" * (4 * PAD_SIZE)


def test_a_sync_callback_runs_while_other_threads_use_the_store(store: anthill.Store) -> None:
    store["shared"] = b"s" * 100
    seen: list[bytes] = []

    def callback(event: object) -> None:
        if isinstance(event, anthill.StartingUpload):
            # Another thread uses the store while this put waits on us.
            with ThreadPoolExecutor(1) as pool:
                seen.append(pool.submit(store.fetch_item, "shared").result())

    store.store_item("k", b"k" * 5000, callback=callback)
    assert seen == [b"s" * 100]


def test_many_threads_share_one_store(store: anthill.Store) -> None:
    def work(worker: int) -> None:
        for i in range(10):
            key = f"w{worker}/{i}"
            value = f"{worker}-{i}".encode() * (i * 300 + 1)
            store.store_item(key, value)
            assert store.fetch_item(key) == value
            if i % 3 == 0:
                store.remove_item(key)

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work, w) for w in range(8)]:
            future.result()
    summary = store.summary()
    assert summary.items == 8 * 6
    expected = sum(
        len(f"{w}-{i}".encode() * (i * 300 + 1)) for w in range(8) for i in range(10) if i % 3
    )
    assert summary.used_space == expected
    assert summary.pending == 0


INTERRUPTED_PUT = """
import anthill, sys
store = anthill.open("sim+memory://slow?latency_ms=100", secret="s", pad_size=4096,
                     reservation_concurrency=1, upload_concurrency=1)
def announce(event):
    if isinstance(event, anthill.ReservationProgress) and event.current == 1:
        print("started", flush=True)
try:
    store.store_item("k", b"k" * (200 * 4096), callback=announce)
except KeyboardInterrupt:
    print("interrupted", "k" in store, flush=True)
    store.store_item("after", b"still usable")
    print("usable", store["after"] == b"still usable", flush=True)
"""


def test_ctrl_c_interrupts_a_blocking_call() -> None:
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_PUT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    # 200 pads at 100 ms each would take 20 s; the put stopped on Ctrl-C instead.
    assert out.split() == ["interrupted", "False", "usable", "True"], out + err
