"""P4 index scaling: the cost of one put of a 1 KiB item when the store
already holds 10^2 keys, against the same when it holds 10^5.

The store is `memory://` (no disk, no network: what is left is anthill's own
work). It is filled with 1 KiB items through `store_item_async` in
`asyncio.gather` batches of 1000. A small put rewrites the partly filled pad
it lands in, so the small store also gets one filler item that brings its
last pad to the same fill as the large store's: both levels then rewrite the
same amount of pad per put, and only the index differs. Each timed put (a
new key) is followed by an untimed removal of that key, so the key count
and the pad fill stay where they are for the next put.
"""

from __future__ import annotations

import asyncio
import time

import anthill
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, timed

SMALL = 100
LARGE = 10_000 if QUICK else 100_000
PROBES = 200 if QUICK else 1000
BATCH = 1000


async def fill(store: anthill.Store, count: int, data: bytes) -> None:
    for first in range(0, count, BATCH):
        keys = range(first, min(first + BATCH, count))
        await asyncio.gather(*(store.store_item_async(f"fill/{i:07d}", data) for i in keys))


def per_put(keys: int, data: bytes, pad_fill: int) -> dict[str, float]:
    store = anthill.open("memory://", secret=SECRET, pad_size=PAD_SIZE)
    fill_s = timed(lambda: asyncio.run(fill(store, keys, data)))
    filler = (pad_fill - store.summary().used_space) % PAD_SIZE
    if filler:
        store.store_item("filler", bytes(filler))
    summary = store.summary()
    assert summary.used_space % PAD_SIZE == pad_fill, summary
    spent = 0.0
    for i in range(PROBES):
        started = time.perf_counter()
        store.store_item(f"probe/{i:07d}", data)
        spent += time.perf_counter() - started
        store.remove_item(f"probe/{i:07d}")
    result = {
        "keys": len(store),
        "pads": summary.total_pads,
        "last_pad_fill": pad_fill,
        "fill_s": fill_s,
        "probe_s": spent,
        "per_put_s": spent / PROBES,
    }
    store.close()
    return result


def main() -> None:
    data = bytes(range(256)) * (KIB // 256)
    pad_fill = LARGE * KIB % PAD_SIZE  # where the large store's last pad stands
    small = per_put(SMALL, data, pad_fill)
    large = per_put(LARGE, data, pad_fill)
    emit({"probes": PROBES, "small": small, "large": large})


if __name__ == "__main__":
    main()
