"""C2 compaction: pads in use after compacting a thinned store, against the
ideal ceil(live bytes / pad size).

On `sim+memory://` (the sim counts pad deletions) with 256 KiB pads: 1,000
items of log-uniform sizes (100 B .. 1 MiB, so some span pads and most share
them) are stored, 80% of them (every item whose number is not a multiple of
5) removed, and the store compacted once. Every surviving item is then read
back and checked, and the store verified.
"""

from __future__ import annotations

import math
import random

import anthill
from common import SECRET, emit, timed

PAD = 256 * 1024
ITEMS = 1000


def main() -> None:
    rng = random.Random(2)
    store = anthill.open("sim+memory://c2", secret=SECRET, pad_size=PAD)
    items: dict[str, bytes] = {}
    for i in range(ITEMS):
        size = int(math.exp(rng.uniform(math.log(100), math.log(1 << 20))))
        data = rng.randbytes(size)
        store.store_item(f"k{i}", data)
        if i % 5 == 0:
            items[f"k{i}"] = data
    for i in range(ITEMS):
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
            raise SystemExit(f"{key} did not read back after compaction")
    verified = store.verify()
    live = sum(len(v) for v in items.values())
    emit(
        {
            "items": ITEMS,
            "items_live": len(items),
            "pad_size": PAD,
            "live_bytes": live,
            "ideal_pads": -(-live // PAD),
            "pads_before": before.total_pads,
            "pads_after": after.total_pads,
            "pads_deleted": stats.pads_deleted,
            "bytes_moved": report[0].bytes_moved,
            "items_moved": report[0].items_moved,
            "verified_ok": verified.ok,
            "seconds": seconds,
        }
    )


if __name__ == "__main__":
    main()
