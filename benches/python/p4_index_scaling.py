"""P4 index scaling: a sync loop of 1 KiB puts into a store that holds 10^5
keys, against the same loop into one that holds 10^2, both with their pads
partly filled the same way.

The store is `memory://` (no disk, no network: what is left is anthill's own
work). Both levels hold the same bytes in the same pads and differ in their
number of keys: the large store 10^5 items of 1 KiB, the small one 10^2
items of 1,000 KiB; each is filled through `store_item_async` in
`asyncio.gather` batches, flushed (every pad written), and then a random
tenth of its items is removed, which leaves holes in every pad: 10^4 holes
of 1 KiB in the large store, 10 of 1,000 KiB in the small one. The timed
part is a plain loop of `store_item` calls with new keys, in rounds; the
puts land in those holes (the pad count is checked not to grow), so they
commit through the log and leave existing pads dirty, as small puts into a
long-lived store do. After each round, untimed, `flush()` writes the dirty
pads back; its time is reported beside. The figure is the median round.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import anthill
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, timed

SMALL = 100
LARGE = 10_000 if QUICK else 100_000
#: The share of the items removed after the fill.
REMOVED = 0.1
PROBES = 500 if QUICK else 1600
ROUNDS = 5
BATCH = 1000


async def fill(store: anthill.Store, count: int, data: bytes) -> None:
    for first in range(0, count, BATCH):
        keys = range(first, min(first + BATCH, count))
        await asyncio.gather(*(store.store_item_async(f"fill/{i:07d}", data) for i in keys))


async def remove(store: anthill.Store, keys: list[str]) -> None:
    for first in range(0, len(keys), BATCH):
        await asyncio.gather(*(store.remove_item_async(k) for k in keys[first : first + BATCH]))


def level(keys: int, item_bytes: int, probe: bytes) -> dict[str, object]:
    store = anthill.open("memory://", secret=SECRET, pad_size=PAD_SIZE)
    data = bytes(range(256)) * (item_bytes // 256)
    fill_s = timed(lambda: asyncio.run(fill(store, keys, data)))
    store.flush()
    victims = random.Random(keys).sample(
        [f"fill/{i:07d}" for i in range(keys)], int(keys * REMOVED)
    )
    asyncio.run(remove(store, victims))
    store.flush()
    before = store.summary()
    rounds, flushes = [], []
    for r in range(ROUNDS):
        started = time.perf_counter()
        for i in range(PROBES):
            store.store_item(f"probe/{r}/{i:07d}", probe)
        rounds.append(time.perf_counter() - started)
        flushes.append(timed(store.flush))
    after = store.summary()
    assert after.total_pads == before.total_pads, (before, after)  # the puts filled holes
    result = {
        "keys": before.items,
        "item_bytes": item_bytes,
        "pads": before.total_pads,
        "fill": before.used_space / before.total_space,
        "fill_s": fill_s,
        "rounds_s": rounds,
        "flush_s": flushes,
        "per_put_s": statistics.median(rounds) / PROBES,
        "flush_per_put_s": statistics.median(flushes) / PROBES,
    }
    store.close()
    return result


def main() -> None:
    probe = bytes(range(256)) * (KIB // 256)
    # The same bytes in both stores: the small one's items are larger.
    small = level(SMALL, LARGE * KIB // SMALL, probe)
    large = level(LARGE, KIB, probe)
    emit({"probes": PROBES, "rounds": ROUNDS, "removed": REMOVED, "small": small, "large": large})


if __name__ == "__main__":
    main()
