"""C2 compaction: pads in use after compacting a thinned store, against the
ideal ceil(live bytes / pad size), on three mixes of sizes.

On `sim+memory://` (the sim counts pad deletions), for each mix: items are
stored, 80% of them (every item whose number is not a multiple of 5)
removed, and the store compacted once. Every surviving item is then read
back and checked, and the store verified. The mixes:

- log-uniform: 1,000 items of 100 B .. 1 MiB (log-uniform) on 256 KiB pads,
  so some span pads and most share them;
- uniform: 400 items of 200 B .. half a pad (uniform) on 64 KiB pads;
- bimodal: 400 items on 64 KiB pads, half 100 B .. 2 KiB, half 40 KiB ..
  3 pads (uniform within each kind).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import anthill
from common import SECRET, emit, timed

KIB = 1024


def log_uniform(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(100), math.log(1 << 20))))


def uniform(rng: random.Random) -> int:
    return rng.randint(200, 32 * KIB)


def bimodal(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.randint(100, 2 * KIB)
    return rng.randint(40 * KIB, 3 * 64 * KIB)


# (name, what the sizes are, items, pad size, sizes)
MIXES: list[tuple[str, str, int, int, Callable[[random.Random], int]]] = [
    ("log-uniform", "100 B .. 1 MiB, log-uniform", 1000, 256 * KIB, log_uniform),
    ("uniform", "200 B .. half a pad, uniform", 400, 64 * KIB, uniform),
    ("bimodal", "half 100 B .. 2 KiB, half 40 KiB .. 3 pads", 400, 64 * KIB, bimodal),
]


def run_mix(
    name: str, sizes: str, count: int, pad: int, size: Callable[[random.Random], int]
) -> dict[str, Any]:
    rng = random.Random(2)
    store = anthill.open(f"sim+memory://c2-{name}", secret=SECRET, pad_size=pad)
    items: dict[str, bytes] = {}
    for i in range(count):
        data = rng.randbytes(size(rng))
        store.store_item(f"k{i}", data)
        if i % 5 == 0:
            items[f"k{i}"] = data
    for i in range(count):
        if i % 5:
            store.remove_item(f"k{i}")
    before = store.summary()
    report: list[anthill.CompactReport] = []
    seconds = timed(lambda: report.append(store.compact()))
    after = store.summary()
    stats = store.backend_stats()
    assert stats is not None
    for key, data in items.items():
        if store.fetch_item(key) != data:
            raise SystemExit(f"{name}: {key} did not read back after compaction")
    verified = store.verify()
    live = sum(len(v) for v in items.values())
    store.close()
    return {
        "mix": name,
        "sizes": sizes,
        "items": count,
        "items_live": len(items),
        "pad_size": pad,
        "live_bytes": live,
        "ideal_pads": -(-live // pad),
        "pads_before": before.total_pads,
        "pads_after": after.total_pads,
        "pads_deleted": stats.pads_deleted,
        "bytes_moved": report[0].bytes_moved,
        "items_moved": report[0].items_moved,
        "verified_ok": verified.ok,
        "seconds": seconds,
    }


def main() -> None:
    emit({"mixes": [run_mix(*mix) for mix in MIXES]})


if __name__ == "__main__":
    main()
