"""P2 throughput: put and get of a 1 GiB item on a local folder store,
against obstore's LocalStore putting and getting the same bytes to the same
disk, in the same run.

Both sides start from a fresh folder under the same scratch directory, with
the disk flushed (`os.sync`) before each timed put so that neither pays for
the other's writeback. By default neither side fsyncs: anthill encrypts and
authenticates every pad and writes it atomically (temp file + rename, which
survives a process crash), and obstore writes the file and
renames it (its default). The fsync figures compare the two in durable mode:
anthill's put into a fresh store opened with `fsync=True`, against obstore's
put followed by an fsync of the file and its folder. Gets read what the put
just wrote, from the page cache for both. After one untimed round, the runs
alternate which side goes first; the median of the runs is reported.
"""

from __future__ import annotations

import os

import anthill
import obstore
from common import GIB, MIB, QUICK, SECRET, emit, median, scratch_dir, sync_disk, timed
from obstore.store import LocalStore

SIZE = 128 * MIB if QUICK else GIB
RUNS = 1 if QUICK else 5


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_anthill(data: bytes) -> tuple[float, float, float]:
    with scratch_dir("p2-anthill") as folder:
        store = anthill.open(folder.as_uri(), secret=SECRET)
        sync_disk()
        put = timed(lambda: store.store_item("big", data))
        result: list[bytes] = []
        get = timed(lambda: result.append(store.fetch_item("big")))
        assert len(result[0]) == len(data)
        result.clear()
        store.close()
    with scratch_dir("p2-anthill-fsync") as folder:
        durable = anthill.open(folder.as_uri(), secret=SECRET, fsync=True)
        sync_disk()
        put_fsync = timed(lambda: durable.store_item("big", data))
        durable.close()
    return put, get, put_fsync


def run_obstore(data: bytes) -> tuple[float, float, float]:
    with scratch_dir("p2-obstore") as folder:
        store = LocalStore(folder)
        sync_disk()
        put = timed(lambda: obstore.put(store, "big", data))
        result: list[object] = []
        get = timed(lambda: result.append(obstore.get(store, "big").bytes()))
        assert len(result[0]) == len(data)  # type: ignore[arg-type]
        result.clear()

        def durable_put() -> None:
            obstore.put(store, "big2", data)
            fsync_path(str(folder / "big2"))
            fsync_path(str(folder))

        sync_disk()
        put_fsync = timed(durable_put)
    return put, get, put_fsync


def main() -> None:
    data = os.urandom(SIZE)
    runs: dict[str, list[float]] = {
        "anthill_put": [],
        "anthill_get": [],
        "anthill_put_fsync": [],
        "obstore_put": [],
        "obstore_get": [],
        "obstore_put_fsync": [],
    }
    # One untimed round first: the first large put in a process pays for
    # faulting in fresh memory (page cache and buffers) on both sides.
    run_anthill(data)
    run_obstore(data)
    for run in range(RUNS):
        order = ("anthill", "obstore") if run % 2 == 0 else ("obstore", "anthill")
        for side in order:
            if side == "anthill":
                put, get, put_fsync = run_anthill(data)
                runs["anthill_put"].append(put)
                runs["anthill_get"].append(get)
                runs["anthill_put_fsync"].append(put_fsync)
            else:
                put, get, put_fsync = run_obstore(data)
                runs["obstore_put"].append(put)
                runs["obstore_get"].append(get)
                runs["obstore_put_fsync"].append(put_fsync)
    result: dict[str, object] = {"bytes": SIZE, "runs_s": runs}
    for name, values in runs.items():
        result[f"{name}_s"] = median(values)
    emit(result)


if __name__ == "__main__":
    main()
