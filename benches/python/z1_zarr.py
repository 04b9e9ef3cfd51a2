"""Z1 zarr: writing and reading a 1-D array of 1,000 chunks of 16 KiB
(float64, uncompressed) through `anthill.zarr.AnthillStore` on a local folder
store, against zarr's own `LocalStore` (one file per chunk) on the same disk;
and the pads anthill used for it beside the files LocalStore made.

Each side writes the whole array with one `array[:] = data` (zarr stores the
chunks concurrently, `async.concurrency` at a time) into a fresh folder, then
reads it back with one `array[:]` from a freshly opened array; the data are
checked. Median of three rounds. anthill runs on `sim+file://…` without
latency, failures or price (a folder store whose backend calls are counted),
with 4 MiB pads, so the backend's write requests and bytes are at hand.
"""

from __future__ import annotations

import math

import anthill
import numpy as np
import zarr
from anthill.zarr import AnthillStore
from common import KIB, PAD_SIZE, QUICK, SECRET, emit, median, scratch_dir, sync_disk, timed
from zarr.abc.store import Store
from zarr.storage import LocalStore

CHUNKS = 100 if QUICK else 1000
CHUNK_BYTES = 16 * KIB
ROUNDS = 3


def array_data() -> np.ndarray:
    return np.arange(CHUNKS * CHUNK_BYTES // 8, dtype="f8")


def write_and_read(store: Store, data: np.ndarray) -> tuple[float, float]:
    array = zarr.create_array(
        store, shape=data.shape, chunks=(CHUNK_BYTES // 8,), dtype=data.dtype, compressors=None
    )
    sync_disk()

    def write() -> None:
        array[:] = data

    write_s = timed(write)
    sync_disk()
    reopened = zarr.open_array(store, mode="r")
    read: list[np.ndarray] = []
    read_s = timed(lambda: read.append(reopened[:]))
    assert np.array_equal(read[0], data)
    return write_s, read_s


def run_anthill(data: np.ndarray) -> dict[str, float]:
    writes, reads = [], []
    for _ in range(ROUNDS):
        with scratch_dir("z1-anthill") as folder:
            store = anthill.open(f"sim+{folder.as_uri()}", secret=SECRET, pad_size=PAD_SIZE)
            write_s, read_s = write_and_read(AnthillStore(store), data)
            summary = store.summary()
            stats = store.backend_stats()
            assert stats is not None
            item_bytes = sum(item.size for item in store.list_items())
            store.close()
        writes.append(write_s)
        reads.append(read_s)
    return {
        "write_s": median(writes),
        "read_s": median(reads),
        "items": summary.items,
        "item_bytes": item_bytes,
        "pads": summary.total_pads,
        "pad_size": summary.pad_size,
        "ideal_pads": math.ceil(item_bytes / summary.pad_size),
        "write_requests": stats.put.calls + stats.reserve.calls,
        "bytes_written": stats.put.bytes + stats.reserve.bytes,
        "get_requests": stats.get.calls,
        "bytes_read": stats.get.bytes,
    }


def run_local_store(data: np.ndarray) -> dict[str, float]:
    writes, reads = [], []
    for _ in range(ROUNDS):
        with scratch_dir("z1-localstore") as folder:
            write_s, read_s = write_and_read(LocalStore(folder), data)
            files = sum(1 for path in folder.rglob("*") if path.is_file())
        writes.append(write_s)
        reads.append(read_s)
    return {"write_s": median(writes), "read_s": median(reads), "files": files}


def main() -> None:
    data = array_data()
    emit(
        {
            "chunks": CHUNKS,
            "chunk_bytes": CHUNK_BYTES,
            "array_bytes": data.nbytes,
            "concurrency": zarr.config.get("async.concurrency"),
            "zarr_version": zarr.__version__,
            "local_store": run_local_store(data),
            "anthill": run_anthill(data),
        }
    )


if __name__ == "__main__":
    main()
