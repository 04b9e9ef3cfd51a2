"""A cancellation, at any instant, is as harmless as a crash (R10, bounded;
the full run is `python tests_py/cancel_harness.py --cancellations 500`);
opening beside a writer never fails nor waits for it; a callback cannot
deadlock its own call; a child made by fork() works. Outcomes and counts:
the timeouts below only turn a hang into a failure."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import anthill
import pytest
from cancel_harness import run

# Every wait below is bounded: a hang fails the test instead of the run.
HANG = 60


def test_random_cancellations_lose_and_damage_nothing():
    report = run(cancellations=60, seed=2026)
    assert report.failures == []
    assert report.hangs == 0
    assert report.cancellations >= 60
    # Each way of stopping a call was exercised.
    assert report.async_cancels > 0
    assert report.interrupts > 0
    assert report.kills > 0
    assert report.items_checked > 0
    assert report.writable_checks == report.rounds


def test_async_cancelled_puts_never_share_space(tmp_path: Path):
    """Puts abandoned by asyncio timeouts mid-write (the record of one may
    land after its caller is gone): every item listed reads back whole, in
    this process and a fresh one, and the store takes writes."""
    url = f"sim+file://{tmp_path / 's'}?latency_ms=20&jitter_ms=20"
    store = anthill.open(url, secret="s", pad_size=65536)

    async def main() -> dict[str, bytes]:
        stored = {}
        for i in range(40):
            data = bytes([i]) * (100 if i % 2 else 20_000)
            try:
                await asyncio.wait_for(store.store_item_async(f"k{i}", data), 0.001 * (i % 40))
            except asyncio.TimeoutError:
                pass
            stored[f"k{i}"] = data
        return stored

    stored = asyncio.run(main())
    store.store_item("after", b"a" * 20_000)
    store.flush()
    listed = set(store.keys())
    for key in listed - {"after"}:
        assert store.fetch_item(key) == stored[key]
    store.close()
    check = subprocess.run(
        [sys.executable, "-c", CHECK_FRESH, url, *sorted(listed)],
        check=False,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert check.returncode == 0, check.stderr


CHECK_FRESH = r"""
import sys, anthill
url, keys = sys.argv[1], sys.argv[2:]
store = anthill.open(url, secret="s")
assert sorted(store.keys()) == keys, (sorted(store.keys()), keys)
for key in keys:
    store.fetch_item(key)
store.store_item("fresh", b"f" * 30_000)
assert store.verify(deep=True).ok
store.close()
"""

LOOPING_WRITER = r"""
import os, sys, anthill
url, stop = sys.argv[1], sys.argv[2]
store = anthill.open(url, secret="s")
i = 0
while not os.path.exists(stop):
    store[f"k{i % 200}"] = b"x" * 100
    i += 1
    if i == 1:
        print("writing", flush=True)
store.close()
"""

OPENER = r"""
import sys, anthill
url, opens = sys.argv[1], int(sys.argv[2])
for _ in range(opens):
    store = anthill.open(url, secret="s")
    assert store["k0"] == b"x" * 100
    store.close()
print("opened", opens, flush=True)
"""


def test_opening_beside_a_writer_neither_fails_nor_waits(tmp_path: Path):
    """A process storing in a loop, never pausing: another opens the store
    again and again while it runs. Opening read a log listing taken while
    objects were created (a gap: `IntegrityError`), and waited for the
    writer lock, which the loop never let go."""
    url = f"file://{tmp_path / 's'}"
    anthill.open(url, secret="s").close()
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", LOOPING_WRITER, url, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        opener = subprocess.run(
            [sys.executable, "-c", OPENER, url, "40"],
            check=False,
            capture_output=True,
            text=True,
            timeout=HANG,
        )
        assert opener.returncode == 0, opener.stderr
        assert opener.stdout == "opened 40\n"
        # The writer was at work through all of them.
        assert writer.poll() is None
    finally:
        stop.touch()
        writer.wait(HANG)
    assert writer.returncode == 0


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_callback_of_an_async_put_cannot_deadlock_it(kind: str):
    """A callback of `store_item_async` that stores another item needing new
    pads: refused, as the sync API refuses it, where both puts hung for
    ever (the outer one holds the turn to reserve pads)."""
    store = anthill.open(f"memory://nested-callback-{kind}", secret="s", pad_size=4096)

    async def async_callback(event):
        if isinstance(event, anthill.ConfirmReservation):
            await store.store_item_async("inner", b"i" * 10_000)

    def sync_callback(event):
        if isinstance(event, anthill.ConfirmReservation):
            store.store_item("inner", b"i" * 10_000)

    callback = async_callback if kind == "async" else sync_callback

    async def main():
        put = store.store_item_async("outer", b"o" * 10_000, callback=callback)
        await asyncio.wait_for(put, HANG)

    with pytest.raises(anthill.InvalidInputError, match="callback cannot store"):
        asyncio.run(main())
    assert "outer" not in store and "inner" not in store
    # Reads stay allowed inside a callback, and the store works after.
    seen = []

    async def reading_callback(event):
        if isinstance(event, anthill.StoreComplete):
            seen.append(await store.summary_async())

    async def again():
        await store.store_item_async("outer", b"o" * 10_000, callback=reading_callback)

    asyncio.run(again())
    assert store["outer"] == b"o" * 10_000
    assert seen and seen[0].items >= 0
    store.close()


def _child_stores(url: str) -> bool:
    store = anthill.open(url, secret="s")
    store["from-child"] = b"x" * 100
    ok = store["from-child"] == b"x" * 100
    store.close()
    return ok


_inherited: anthill.Store | None = None


def _child_uses_inherited() -> str:
    assert _inherited is not None
    try:
        _inherited["p"]
    except anthill.InvalidInputError as error:
        return str(error)
    return "no error"


def test_a_forked_child_uses_anthill(tmp_path: Path):
    """multiprocessing's 'fork' (Linux's default before Python 3.14): a
    child of a process that used anthill opens and writes a store of its
    own, where it hung (its parent's runtime threads do not exist in it); a
    handle it inherited is refused with a message naming 'spawn'."""
    global _inherited
    url = f"file://{tmp_path / 's'}"
    parent = _inherited = anthill.open(url, secret="s")
    parent["p"] = b"parent"
    forked = multiprocessing.get_context("fork")
    with forked.Pool(1) as pool:
        assert pool.apply_async(_child_stores, (url,)).get(timeout=HANG) is True
        message = pool.apply_async(_child_uses_inherited).get(timeout=HANG)
    assert "spawn" in message and str(os.getpid()) in message
    assert parent["from-child"] == b"x" * 100
    parent["p2"] = b"still the parent's"
    parent.close()
    _inherited = None


def test_a_child_forked_while_its_parent_writes_does_not_keep_the_store_locked(tmp_path: Path):
    """A folder store's writer lock is an OS lock on an open file, which a
    forked child shares: forked while its parent held the lock (mid-put),
    the child kept the store locked for both, and its own put hung."""
    url = f"file://{tmp_path / 's'}"
    slow = anthill.open(f"sim+{url}?latency_ms=200", secret="s", pad_size=4096)
    holding = threading.Event()

    def announce(event):
        if isinstance(event, anthill.StartingUpload):
            holding.set()  # the lock is held until the put ends

    writer = threading.Thread(
        target=slow.store_item, args=("big", b"b" * 3 * 4096), kwargs={"callback": announce}
    )
    writer.start()
    assert holding.wait(HANG)
    forked = multiprocessing.get_context("fork")
    with forked.Pool(1) as pool:
        stored = pool.apply_async(_child_stores, (url,))
        writer.join(HANG)
        assert stored.get(timeout=HANG) is True
        slow["after"] = b"the parent writes again"
    assert slow["from-child"] == b"x" * 100
    slow.close()
