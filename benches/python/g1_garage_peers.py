"""G1 anthill against its peers on the local 3-node Garage cluster, one run:

- random gets: items of 1 KiB, 64 KiB and 1 MiB, stored by each side under
  a fresh prefix (anthill: `store_item`s then `close`; obstore: `put`s into
  its `S3Store`), then read in random order through a freshly opened handle
  (anthill) or store (obstore), one `fetch_item` / `get(...).bytes()` at a
  time, each checked;
- a sync loop of 1 MiB puts (anthill's `close` included) against a loop of
  obstore `put`s;
- zarr, 1-D float64 arrays in chunks of 16 KiB and of 1 MiB: written whole
  (anthill's `close`, icechunk's commit included), then read whole by a
  fresh process (see `zarr_sides.py`), through anthill's `AnthillStore`,
  zarr's `ObjectStore` over obstore's `S3Store`, and icechunk, with the
  bytes that process read (sockets included) per chunk.

The 256 MiB put against obstore is P7's row. Median of three rounds, the
sides' order rotating. Needs `ANTHILL_TEST_S3_URL` and the `AWS_*`
variables that `scripts/garage.sh start 3` prints.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

import anthill
import obstore
from common import KIB, MIB, QUICK, SECRET, emit, median, timed
from obstore.store import S3Store
from zarr_sides import SIDES, array_data, read_in_fresh_process, s3_settings, write

GET_SIZES = (KIB, 64 * KIB, MIB)
ITEMS = {KIB: 200, 64 * KIB: 200, MIB: 48} if not QUICK else {KIB: 20, 64 * KIB: 20, MIB: 8}
GETS = 30 if QUICK else 200
PUTS = 16 if QUICK else 64
ZARR = {16 * KIB: 100 if QUICK else 1000, MIB: 8 if QUICK else 64}  # chunk size: chunks
ROUNDS = 3


def anthill_url(prefix: str) -> str:
    s3 = s3_settings()
    return f"{s3['base']}/{prefix}?{s3['query']}"


def obstore_store(prefix: str) -> S3Store:
    s3 = s3_settings()
    return S3Store(
        s3["bucket"],
        prefix=prefix,
        endpoint=s3["endpoint"],
        region=s3["region"],
        client_options={"allow_http": s3["endpoint"].startswith("http://")},
    )


def fresh(tag: str) -> str:
    return f"g1-{tag}-{uuid.uuid4().hex}"


def anthill_gets(items: list[bytes], order: list[int]) -> float:
    prefix = fresh("gets")
    writer = anthill.open(anthill_url(prefix), secret=SECRET)
    for i, item in enumerate(items):
        writer.store_item(f"k{i}", item)
    writer.close()
    reader = anthill.open(anthill_url(prefix), secret=SECRET)
    reader.fetch_item("k0")  # the connection and the index, as obstore's warm-up

    def gets() -> None:
        for i in order:
            assert reader.fetch_item(f"k{i}") == items[i]

    seconds = timed(gets)
    reader.close()
    return seconds


def obstore_gets(items: list[bytes], order: list[int]) -> float:
    prefix = fresh("gets-obstore")
    writer = obstore_store(prefix)
    for i, item in enumerate(items):
        obstore.put(writer, f"k{i}", item)
    reader = obstore_store(prefix)
    obstore.get(reader, "k0").bytes()

    def gets() -> None:
        for i in order:
            assert bytes(obstore.get(reader, f"k{i}").bytes()) == items[i]

    return timed(gets)


def anthill_loop(items: list[bytes]) -> float:
    store = anthill.open(anthill_url(fresh("loop")), secret=SECRET)
    store.store_item("warm-up", b"x")  # the lease, the first pad

    def loop() -> None:
        for i, item in enumerate(items):
            store.store_item(f"item/{i:06d}", item)
        store.close()

    return timed(loop)


def obstore_loop(items: list[bytes]) -> float:
    store = obstore_store(fresh("loop-obstore"))
    obstore.put(store, "warm-up", b"x")

    def loop() -> None:
        for i, item in enumerate(items):
            obstore.put(store, f"item/{i:06d}", item)

    return timed(loop)


def zarr_round(side: str, chunk_bytes: int, chunks: int, run: int) -> dict[str, float]:
    """One side's write and fresh read; the array's numbers are new in each
    round and side, since Garage keeps one copy per content."""
    place = f"s3:{fresh(f'zarr-{side}')}"
    start = (run * len(SIDES) + SIDES.index(side)) * chunks * chunk_bytes
    write_s = write(side, place, array_data(chunks, chunk_bytes, start), chunk_bytes)
    read = read_in_fresh_process(side, place, chunks, chunk_bytes, start)
    return {"write_s": write_s, **read}


def main() -> None:
    rng = random.Random(27)
    result: dict[str, Any] = {"gets": GETS, "puts": PUTS}
    for size in GET_SIZES:
        items = [os.urandom(size) for _ in range(ITEMS[size])]
        order = [rng.randrange(len(items)) for _ in range(GETS)]
        ours, peer = [], []
        for run in range(ROUNDS):
            if run % 2 == 0:
                ours.append(anthill_gets(items, order))
                peer.append(obstore_gets(items, order))
            else:
                peer.append(obstore_gets(items, order))
                ours.append(anthill_gets(items, order))
        result[f"get_{size}"] = {"anthill_s": median(ours), "obstore_s": median(peer)}
    ours, peer = [], []
    for run in range(ROUNDS):
        # New bytes each round: Garage stores a block once per content, so a
        # peer putting the bytes of an earlier round wrote nothing (see P7).
        items = [os.urandom(MIB) for _ in range(PUTS)]
        if run % 2 == 0:
            ours.append(anthill_loop(items))
            peer.append(obstore_loop(items))
        else:
            peer.append(obstore_loop(items))
            ours.append(anthill_loop(items))
    result["loop"] = {"anthill_s": median(ours), "obstore_s": median(peer)}
    for chunk_bytes, chunks in ZARR.items():
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
        for run in range(ROUNDS):
            for side in SIDES[run % 3 :] + SIDES[: run % 3]:
                runs[side].append(zarr_round(side, chunk_bytes, chunks, run))
        result[f"zarr_{chunk_bytes}"] = {
            "chunks": chunks,
            **{
                side: {
                    key: median([r[key] for r in side_runs])
                    for key in ("write_s", "read_s", "bytes_read")
                }
                for side, side_runs in runs.items()
            },
        }
    emit(result)


if __name__ == "__main__":
    main()
