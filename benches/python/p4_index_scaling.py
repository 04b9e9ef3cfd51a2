"""P4 index scaling: a sync loop of 1 KiB puts into a store that holds 10^5
keys, against the same loop into one that holds 10^2, both with their pads
partly filled the same way.

The stores are `memory://` (no disk, no network: what is left is anthill's
own work). Both hold the same bytes in the same pads and differ in their
number of keys: the large store 10^5 items of 1 KiB, the small one 10^2
items of 1,000 KiB; each is filled through `store_item_async` in
`asyncio.gather` batches, flushed (every pad written), and then a random
tenth of its items is removed, which leaves holes in every pad: 10^4 holes
of 1 KiB in the large store, 10 of 1,000 KiB in the small one. The timed
part is a plain loop of `store_item` calls with new keys, in rounds that
alternate between the two stores (so that load from elsewhere on a shared
machine falls on both alike); the puts land in the holes (the pad count is
checked not to grow), so they commit through the log and leave existing
pads dirty, as small puts into a long-lived store do. After each round,
untimed, `flush()` writes the dirty pads back; its time is reported beside.
The figure is the best round (load from elsewhere only adds time).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import anthill
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, timed

SMALL = 100
LARGE = 10_000 if QUICK else 100_000
#: The share of the items removed after the fill.
REMOVED = 0.1
PROBES = 250 if QUICK else 1000
ROUNDS = 8
BATCH = 1000


async def fill(store: anthill.Store, count: int, data: bytes) -> None:
    for first in range(0, count, BATCH):
        keys = range(first, min(first + BATCH, count))
        await asyncio.gather(*(store.store_item_async(f"fill/{i:07d}", data) for i in keys))


async def remove(store: anthill.Store, keys: list[str]) -> None:
    for first in range(0, len(keys), BATCH):
        await asyncio.gather(*(store.remove_item_async(k) for k in keys[first : first + BATCH]))


def prepared(keys: int, item_bytes: int) -> tuple[anthill.Store, dict[str, Any]]:
    """A store of `keys` items of `item_bytes`, a tenth of them removed."""
    store = anthill.open("memory://", secret=SECRET, pad_size=PAD_SIZE)
    data = bytes(range(256)) * (item_bytes // 256)
    fill_s = timed(lambda: asyncio.run(fill(store, keys, data)))
    store.flush()
    victims = random.Random(keys).sample(
        [f"fill/{i:07d}" for i in range(keys)], int(keys * REMOVED)
    )
    asyncio.run(remove(store, victims))
    store.flush()
    summary = store.summary()
    return store, {
        "keys": summary.items,
        "item_bytes": item_bytes,
        "pads": summary.total_pads,
        "fill": summary.used_space / summary.total_space,
        "fill_s": fill_s,
        "rounds_s": [],
        "flush_s": [],
    }


def probe_round(store: anthill.Store, result: dict[str, Any], r: int, probe: bytes) -> None:
    started = time.perf_counter()
    for i in range(PROBES):
        store.store_item(f"probe/{r}/{i:07d}", probe)
    result["rounds_s"].append(time.perf_counter() - started)
    result["flush_s"].append(timed(store.flush))


def main() -> None:
    probe = bytes(range(256)) * (KIB // 256)
    # The same bytes in both stores: the small one's items are larger.
    levels = {
        "small": prepared(SMALL, LARGE * KIB // SMALL),
        "large": prepared(LARGE, KIB),
    }
    for r in range(ROUNDS):
        order = ["small", "large"] if r % 2 == 0 else ["large", "small"]
        for name in order:
            store, result = levels[name]
            probe_round(store, result, r, probe)
    out: dict[str, Any] = {"probes": PROBES, "rounds": ROUNDS, "removed": REMOVED}
    for name, (store, result) in levels.items():
        assert store.summary().total_pads == result["pads"]  # the puts filled holes
        # Load from elsewhere only ever adds time: the best round is the
        # least disturbed.
        result["per_put_s"] = min(result["rounds_s"]) / PROBES
        result["median_per_put_s"] = statistics.median(result["rounds_s"]) / PROBES
        result["flush_per_put_s"] = statistics.median(result["flush_s"]) / PROBES
        store.close()
        out[name] = result
    emit(out)


if __name__ == "__main__":
    main()
