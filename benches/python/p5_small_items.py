"""P5 small items: 10^4 puts of 1 KiB to a local folder store, in a sync loop
and in `asyncio.gather` batches of 100, against diskcache (SQLite) storing
the same items on the same disk; plus, from the backend's counters, write
requests per put and bytes written per byte of data.

anthill runs on `sim+file://…` with no latency, failures or price: a plain
local folder store whose every backend call is counted (the counting costs
well under a microsecond per call, against milliseconds per put). Write
requests are `put` + `reserve` calls (pads and index objects alike); bytes
written are their payloads, sealed. Each case starts from a fresh folder.
diskcache uses its defaults (SQLite in WAL mode, synchronous=NORMAL: no
fsync per set), as its users get it.
"""

from __future__ import annotations

import asyncio

import anthill
import diskcache  # type: ignore[import-untyped]
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, scratch_dir, sync_disk, timed

PUTS = 1000 if QUICK else 10_000
BATCH = 100


def counters(store: anthill.Store) -> tuple[int, int]:
    stats = store.backend_stats()
    assert stats is not None
    return stats.put.calls + stats.reserve.calls, stats.put.bytes + stats.reserve.bytes


def run_anthill(data: bytes, gathered: bool) -> dict[str, float]:
    with scratch_dir("p5-anthill") as folder:
        store = anthill.open(f"sim+{folder.as_uri()}", secret=SECRET, pad_size=PAD_SIZE)
        calls_before, bytes_before = counters(store)
        sync_disk()

        def sync_loop() -> None:
            for i in range(PUTS):
                store.store_item(f"item/{i:06d}", data)

        async def gather_batches() -> None:
            for first in range(0, PUTS, BATCH):
                await asyncio.gather(
                    *(
                        store.store_item_async(f"item/{i:06d}", data)
                        for i in range(first, min(first + BATCH, PUTS))
                    )
                )

        seconds = timed((lambda: asyncio.run(gather_batches())) if gathered else sync_loop)
        calls_after, bytes_after = counters(store)
        assert len(store) == PUTS
        store.close()
    requests = calls_after - calls_before
    written = bytes_after - bytes_before
    return {
        "seconds": seconds,
        "puts_per_s": PUTS / seconds,
        "write_requests": requests,
        "write_requests_per_put": requests / PUTS,
        "bytes_written": written,
        "write_amplification": written / (PUTS * len(data)),
    }


def run_diskcache(data: bytes) -> dict[str, float]:
    with scratch_dir("p5-diskcache") as folder:
        cache = diskcache.Cache(str(folder))
        sync_disk()

        def sync_loop() -> None:
            for i in range(PUTS):
                cache.set(f"item/{i:06d}", data)

        seconds = timed(sync_loop)
        assert len(cache) == PUTS
        cache.close()
    return {"seconds": seconds, "puts_per_s": PUTS / seconds}


def main() -> None:
    data = bytes(range(256)) * (KIB // 256)
    emit(
        {
            "puts": PUTS,
            "item_bytes": len(data),
            "batch": BATCH,
            "diskcache": run_diskcache(data),
            "anthill_gathered": run_anthill(data, gathered=True),
            "anthill_sync": run_anthill(data, gathered=False),
        }
    )


if __name__ == "__main__":
    main()
