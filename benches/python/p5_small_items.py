"""P5 small items: 10^4 puts of 1 KiB to a local folder store, in a sync loop
and in `asyncio.gather` batches of 100, against diskcache (SQLite) and
SlateDB (an LSM tree on object storage, here on the local folder) storing
the same items on the same disk; plus, from the backend's counters, write
requests and bytes written per put.

Speed is measured on a plain `file://` folder store, the path users get.
Every contender keeps one store open and its puts run in rounds of a fifth
each; within a round the contenders take turns (in an order that rotates
from round to round), so that a burst of load from elsewhere on a shared
machine falls on all of them alike. A contender's rate is its best round's
(load from elsewhere only adds time); the median round's is reported too.

The counts come from a second run of each anthill loop on `sim+file://…`
(no latency, failures or price: the same folder with every backend call
counted). Write requests are `put` + `reserve` + `durable_put` calls (pads,
log objects and checkpoints alike); bytes written are their payloads,
sealed. A small item is committed by one log object and its pad is written
later (write-back), so the counts run until `close()` has written back
what the log alone held: they include the write-back.

diskcache uses its defaults (SQLite in WAL mode, synchronous=NORMAL: no
fsync per set), as its users get it. SlateDB is measured twice, both
sequential: its default `put` (which returns before its write-ahead log
reaches the store) and a `put` followed by `flush()` (durable when it
returns, as an anthill put is); a `flush()` ends each round of the first.
For reference, the rate at which the same disk creates files (a loop
creating one file of 1 KiB each), since an anthill put on a folder creates
one (its log object). Every folder is removed when the process ends, not
between cases: see `scratch_dir`.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthill
import diskcache  # type: ignore[import-untyped]
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, scratch_dir, sync_disk, timed

PUTS = 1000 if QUICK else 10_000
ROUNDS = 5
BATCH = 100
#: Backend calls that write (the sim's counters).
WRITE_KINDS = ("put", "reserve", "durable_put")
OTHER_KINDS = ("verify", "get", "list", "delete")


def key(i: int) -> str:
    return f"item/{i:06d}"


def rounds() -> list[range]:
    size = PUTS // ROUNDS
    return [range(r * size, (r + 1) * size) for r in range(ROUNDS)]


def folder() -> Path:
    with scratch_dir("p5", remove_at_exit=True) as path:
        return path


# --- the contenders: each a function timing one round of keys ---------------

Round = Callable[[range], float]


def anthill_sync(store: anthill.Store, data: bytes) -> Round:
    def run(keys: range) -> float:
        def loop() -> None:
            for i in keys:
                store.store_item(key(i), data)

        return timed(loop)

    return run


def anthill_gathered(store: anthill.Store, data: bytes, runner: asyncio.Runner) -> Round:
    async def batches(keys: range) -> None:
        for first in range(keys.start, keys.stop, BATCH):
            batch = range(first, min(first + BATCH, keys.stop))
            await asyncio.gather(*(store.store_item_async(key(i), data) for i in batch))

    return lambda keys: timed(lambda: runner.run(batches(keys)))


def diskcache_sets(cache: diskcache.Cache, data: bytes) -> Round:
    def run(keys: range) -> float:
        def loop() -> None:
            for i in keys:
                cache.set(key(i), data)

        return timed(loop)

    return run


def file_creation(where: Path, data: bytes) -> Round:
    """A file per put, as the floor of any store that makes one: open, write
    and close a new file of `data`."""

    def run(keys: range) -> float:
        def loop() -> None:
            for i in keys:
                with open(where / f"{i:06d}", "xb") as file:
                    file.write(data)

        return timed(loop)

    return run


def slatedb_puts(db: Any, data: bytes, runner: asyncio.Runner, flush_each: bool) -> Round:
    async def loop(keys: range) -> None:
        for i in keys:
            await db.put(key(i).encode(), data)
            if flush_each:
                await db.flush()
        await db.flush()

    return lambda keys: timed(lambda: runner.run(loop(keys)))


def open_slatedb(runner: asyncio.Runner) -> Any:
    from slatedb.uniffi import DbBuilder, ObjectStore  # type: ignore[import-untyped]

    # On a local folder SlateDB wants the root as its object store and the
    # path without its leading slash.
    path = str(folder() / "db").lstrip("/")
    return runner.run(DbBuilder(path, ObjectStore.resolve("file:///")).build())


def race(data: bytes) -> dict[str, Any]:
    """Every contender's rounds, interleaved."""
    with asyncio.Runner() as runner:
        sync_store = anthill.open(folder().as_uri(), secret=SECRET, pad_size=PAD_SIZE)
        gathered_store = anthill.open(folder().as_uri(), secret=SECRET, pad_size=PAD_SIZE)
        cache = diskcache.Cache(str(folder()))
        slate, slate_flushed = open_slatedb(runner), open_slatedb(runner)
        contenders: dict[str, Round] = {
            "diskcache": diskcache_sets(cache, data),
            "files": file_creation(folder(), data),
            "slatedb_put": slatedb_puts(slate, data, runner, flush_each=False),
            "slatedb_put_flush": slatedb_puts(slate_flushed, data, runner, flush_each=True),
            "anthill_sync": anthill_sync(sync_store, data),
            "anthill_gathered": anthill_gathered(gathered_store, data, runner),
        }
        names = list(contenders)
        times: dict[str, list[float]] = {name: [] for name in names}
        sync_disk()
        for r, keys in enumerate(rounds()):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(contenders[name](keys))
        results: dict[str, Any] = {}
        for name in names:
            per_round = len(rounds()[0])
            results[name] = {
                "rounds_s": times[name],
                "seconds": sum(times[name]),
                # Load from elsewhere only ever adds time: the best round
                # is the least disturbed.
                "puts_per_s": per_round / min(times[name]),
                "median_puts_per_s": per_round / statistics.median(times[name]),
            }
        for name, store in (("anthill_sync", sync_store), ("anthill_gathered", gathered_store)):
            results[name]["unflushed_after_puts"] = store.unflushed_bytes()
            results[name]["flush_s"] = timed(store.flush)
            assert len(store) == PUTS
            store.close()
        assert len(cache) == PUTS
        cache.close()
        for db in (slate, slate_flushed):
            assert runner.run(db.get(key(PUTS - 1).encode())) == data
            runner.run(db.shutdown())
    return results


# --- the counts ------------------------------------------------------------------


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
    store = anthill.open(f"sim+{folder().as_uri()}", secret=SECRET, pad_size=PAD_SIZE)
    start = counts(store)
    with asyncio.Runner() as runner:
        put = anthill_gathered(store, data, runner) if gathered else anthill_sync(store, data)
        seconds = put(range(PUTS))
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


def main() -> None:
    data = bytes(range(256)) * (KIB // 256)
    result: dict[str, Any] = {"puts": PUTS, "rounds": ROUNDS, "item_bytes": len(data)}
    result["batch"] = BATCH
    result.update(race(data))
    result["anthill_gathered_counted"] = count_anthill(data, gathered=True)
    result["anthill_sync_counted"] = count_anthill(data, gathered=False)
    emit(result)


if __name__ == "__main__":
    main()
