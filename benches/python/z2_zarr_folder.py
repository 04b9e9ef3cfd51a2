"""Z2 zarr and 1 MiB puts on a local folder, against the peers in one run.

- zarr, a 1-D float64 array in chunks of 1 MiB (uncompressed): written
  whole by one `array[:] = data` (icechunk's commit and anthill's `close`,
  which writes its pads back, included), then read whole by a fresh process
  (`zarr_sides.py`: from opening to the end of `array[:]`, data checked),
  through anthill's `AnthillStore`, zarr's `LocalStore` and icechunk's
  local-filesystem repository, each in a fresh folder;
- a sync loop of 1 MiB `store_item`s (then `close`) against a loop of
  obstore `put`s into its `LocalStore`.

Median of three rounds, the sides' order rotating between rounds.
"""

from __future__ import annotations

import os
from typing import Any

import anthill
import obstore
from common import MIB, PAD_SIZE, QUICK, SECRET, emit, median, scratch_dir, sync_disk, timed
from obstore.store import LocalStore
from zarr_sides import SIDES, array_data, read_in_fresh_process, write

CHUNK_BYTES = MIB
CHUNKS = 16 if QUICK else 128
PUTS = 16 if QUICK else 128
ROUNDS = 3


def zarr_round(side: str) -> dict[str, float]:
    data = array_data(CHUNKS, CHUNK_BYTES)
    with scratch_dir(f"z2-{side}") as folder:
        place = str(folder / "array")
        sync_disk()
        write_s = write(side, place, data, CHUNK_BYTES)
        sync_disk()
        read = read_in_fresh_process(side, place, CHUNKS, CHUNK_BYTES)
    return {"write_s": write_s, **read}


def anthill_loop(items: list[bytes]) -> float:
    with scratch_dir("z2-loop-anthill") as folder:
        store = anthill.open(folder.as_uri(), secret=SECRET, pad_size=PAD_SIZE)
        store.store_item("warm-up", b"x")  # the first pad, the writer lock

        def loop() -> None:
            for i, item in enumerate(items):
                store.store_item(f"item/{i:06d}", item)
            store.close()  # the pads written back

        sync_disk()
        return timed(loop)


def obstore_loop(items: list[bytes]) -> float:
    with scratch_dir("z2-loop-obstore") as folder:
        store = LocalStore(str(folder))
        obstore.put(store, "warm-up", b"x")

        def loop() -> None:
            for i, item in enumerate(items):
                obstore.put(store, f"item/{i:06d}", item)

        sync_disk()
        return timed(loop)


def main() -> None:
    items = [os.urandom(MIB) for _ in range(PUTS)]
    zarr_runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    loops: dict[str, list[float]] = {"anthill": [], "obstore": []}
    for run in range(ROUNDS):
        order = SIDES[run % 3 :] + SIDES[: run % 3]
        for side in order:
            zarr_runs[side].append(zarr_round(side))
        if run % 2 == 0:
            loops["anthill"].append(anthill_loop(items))
            loops["obstore"].append(obstore_loop(items))
        else:
            loops["obstore"].append(obstore_loop(items))
            loops["anthill"].append(anthill_loop(items))
    result: dict[str, Any] = {
        "chunks": CHUNKS,
        "chunk_bytes": CHUNK_BYTES,
        "array_bytes": CHUNKS * CHUNK_BYTES,
        "puts": PUTS,
        "runs": zarr_runs,
        "loops": loops,
    }
    for side, runs in zarr_runs.items():
        result[side] = {
            "write_s": median([r["write_s"] for r in runs]),
            "read_s": median([r["read_s"] for r in runs]),
            "bytes_read": median([r["bytes_read"] for r in runs]),
        }
    result["loop_anthill_s"] = median(loops["anthill"])
    result["loop_obstore_s"] = median(loops["obstore"])
    emit(result)


if __name__ == "__main__":
    main()
