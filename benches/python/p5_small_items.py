"""P5 small items: 10^4 puts of 1 KiB to a local folder store, in a sync loop
and in `asyncio.gather` batches of 100, against diskcache (SQLite) and
SlateDB (an LSM tree on object storage, here on the local folder) storing
the same items on the same disk; plus, from the backend's counters, write
requests and bytes written per put.

Speed is measured on a plain `file://` folder store, the path users get.
The counts come from a second run of the same loop on `sim+file://…` (no
latency, failures or price: the same folder with every backend call
counted). Write requests are `put` + `reserve` + `durable_put` calls (pads,
log objects and checkpoints alike); bytes written are their payloads,
sealed. A small item is committed by one log object and its pad is written
later (write-back), so the counts run until `close()` has written back
what the log alone held: they include the write-back. Each case starts
from a fresh folder.

diskcache uses its defaults (SQLite in WAL mode, synchronous=NORMAL: no
fsync per set), as its users get it. SlateDB is measured twice, both
sequential: its default `put` (which returns before its write-ahead log
reaches the store) and a `put` followed by `flush()` (durable when it
returns, as an anthill put is); a final `flush()` ends the first loop's
time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anthill
import diskcache  # type: ignore[import-untyped]
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, scratch_dir, sync_disk, timed

PUTS = 1000 if QUICK else 10_000
BATCH = 100
#: Backend calls that write (the sim's counters).
WRITE_KINDS = ("put", "reserve", "durable_put")
OTHER_KINDS = ("verify", "get", "list", "delete")


def key(i: int) -> str:
    return f"item/{i:06d}"


def sync_loop(store: anthill.Store, data: bytes) -> None:
    for i in range(PUTS):
        store.store_item(key(i), data)


async def gather_batches(store: anthill.Store, data: bytes) -> None:
    for first in range(0, PUTS, BATCH):
        keys = range(first, min(first + BATCH, PUTS))
        await asyncio.gather(*(store.store_item_async(key(i), data) for i in keys))


def run_puts(store: anthill.Store, data: bytes, gathered: bool) -> float:
    if gathered:
        return timed(lambda: asyncio.run(gather_batches(store, data)))
    return timed(lambda: sync_loop(store, data))


def run_anthill(data: bytes, gathered: bool) -> dict[str, Any]:
    """The puts' speed on a plain folder store, and how long the write-back
    of what they left in the log takes afterwards (not part of the speed)."""
    with scratch_dir("p5-anthill") as folder:
        store = anthill.open(folder.as_uri(), secret=SECRET, pad_size=PAD_SIZE)
        sync_disk()
        seconds = run_puts(store, data, gathered)
        unflushed = store.unflushed_bytes()
        flush_s = timed(store.flush)
        assert len(store) == PUTS
        store.close()
    return {
        "seconds": seconds,
        "puts_per_s": PUTS / seconds,
        "unflushed_after_puts": unflushed,
        "flush_s": flush_s,
    }


def counts(store: anthill.Store) -> dict[str, tuple[int, int]]:
    stats = store.backend_stats()
    assert stats is not None
    return {
        kind: (getattr(stats, kind).calls, getattr(stats, kind).bytes)
        for kind in WRITE_KINDS + OTHER_KINDS
    }


def difference(after: dict[str, tuple[int, int]], before: dict[str, tuple[int, int]]) -> Any:
    return {kind: [a - b for a, b in zip(after[kind], before[kind])] for kind in after}


def count_anthill(data: bytes, gathered: bool) -> dict[str, Any]:
    """The same puts on `sim+file://`, counting every backend call from the
    first put to the end of `close()` (write-back included)."""
    with scratch_dir("p5-anthill-counted") as folder:
        store = anthill.open(f"sim+{folder.as_uri()}", secret=SECRET, pad_size=PAD_SIZE)
        start = counts(store)
        seconds = run_puts(store, data, gathered)
        after_puts = counts(store)
        assert len(store) == PUTS
        store.close()
        after_close = counts(store)
    during = difference(after_puts, start)
    total = difference(after_close, start)
    requests = sum(total[kind][0] for kind in WRITE_KINDS)
    written = sum(total[kind][1] for kind in WRITE_KINDS)
    return {
        "seconds": seconds,
        "calls": total,
        "calls_during_puts": during,
        "write_requests": requests,
        "write_requests_per_put": requests / PUTS,
        "other_requests_per_put": sum(total[kind][0] for kind in OTHER_KINDS) / PUTS,
        "bytes_written": written,
        "bytes_written_during_puts": sum(during[kind][1] for kind in WRITE_KINDS),
        "bytes_per_put": written / PUTS,
        "write_amplification": written / (PUTS * len(data)),
    }


def run_diskcache(data: bytes) -> dict[str, float]:
    with scratch_dir("p5-diskcache") as folder:
        cache = diskcache.Cache(str(folder))
        sync_disk()

        def loop() -> None:
            for i in range(PUTS):
                cache.set(key(i), data)

        seconds = timed(loop)
        assert len(cache) == PUTS
        cache.close()
    return {"seconds": seconds, "puts_per_s": PUTS / seconds}


def run_slatedb(data: bytes, flush_each: bool) -> dict[str, float]:
    from slatedb.uniffi import DbBuilder, ObjectStore  # type: ignore[import-untyped]

    async def loop(folder: Path) -> float:
        # On a local folder SlateDB wants the root as its object store and
        # the path without its leading slash.
        db = await DbBuilder(
            str(folder / "db").lstrip("/"), ObjectStore.resolve("file:///")
        ).build()
        started = time.perf_counter()
        for i in range(PUTS):
            await db.put(key(i).encode(), data)
            if flush_each:
                await db.flush()
        await db.flush()
        seconds = time.perf_counter() - started
        assert await db.get(key(PUTS - 1).encode()) == data
        await db.shutdown()
        return seconds

    with scratch_dir("p5-slatedb") as folder:
        sync_disk()
        seconds = asyncio.run(loop(folder))
    return {"seconds": seconds, "puts_per_s": PUTS / seconds}


def main() -> None:
    import slatedb  # type: ignore[import-untyped]  # noqa: F401 - fails early if missing

    data = bytes(range(256)) * (KIB // 256)
    emit(
        {
            "puts": PUTS,
            "item_bytes": len(data),
            "batch": BATCH,
            "diskcache": run_diskcache(data),
            "slatedb_put": run_slatedb(data, flush_each=False),
            "slatedb_put_flush": run_slatedb(data, flush_each=True),
            "anthill_gathered": run_anthill(data, gathered=True),
            "anthill_sync": run_anthill(data, gathered=False),
            "anthill_gathered_counted": count_anthill(data, gathered=True),
            "anthill_sync_counted": count_anthill(data, gathered=False),
        }
    )


if __name__ == "__main__":
    main()
