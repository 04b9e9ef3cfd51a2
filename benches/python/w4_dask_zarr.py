"""W4 a dask cluster writing one zarr array: `dask.array.to_zarr` of a
256 MiB float64 array (random, seeded) in chunks of 2 MB (250,000 values,
uncompressed) from a dask.distributed `LocalCluster` of 4 worker processes
(one thread each), so 4 processes store chunks into one store at once:

- through `anthill.zarr.AnthillStore` on a local folder store, against
  zarr's `LocalStore` on a folder of the same disk;
- through `AnthillStore` on a store on a local Garage cluster of 3 nodes,
  against zarr's `ObjectStore` over obstore's `S3Store` on the same bucket.

The cluster starts once (after `ANTHILL_SECRET` is set, which the workers
inherit: a pickled AnthillStore carries its URL, not its secret) and serves
every case. Each case writes into a fresh folder or prefix; the time is
the whole `to_zarr` call (the chunks are computed on the workers as they
are stored, alike for every side). After each write the array is read back
through the same store on the cluster and its sum checked, untimed. Cases
run in rounds, in an order that rotates from round to round; a side's
figure is its best round (load from elsewhere only adds time).

A write that has not finished after `CAP_S` seconds is cancelled and
counted as taking at least that long: its throughput is then an upper
bound (today anthill on Garage needs minutes, as its writers queue for the
one lease, and the row's time should stay bounded).

Needs `ANTHILL_TEST_S3_URL` and the `AWS_*` variables that
`scripts/garage.sh start 3` prints (scripts/bench.sh starts a cluster).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from common import MIB, QUICK, SECRET, emit
from p7_s3_throughput import s3_base
from writers import create_anthill, fresh_folder

ARRAY_BYTES = (32 if QUICK else 256) * MIB
CHUNK_VALUES = 250_000  # 2 MB of float64
WORKERS = 4
ROUNDS = 1 if QUICK else 2
CAP_S = 20.0 if QUICK else 60.0


def anthill_folder() -> Any:
    from anthill.zarr import AnthillStore

    return AnthillStore(create_anthill(f"file://{fresh_folder('w4-anthill')}"))


def local_store() -> Any:
    from zarr.storage import LocalStore

    return LocalStore(fresh_folder("w4-local"))


def anthill_s3() -> Any:
    from anthill.zarr import AnthillStore

    base, options, _, _ = s3_base()
    query = "&".join(f"{k}={v}" for k, v in options.items())
    url = f"{base}/w4-{uuid.uuid4().hex}" + (f"?{query}" if query else "")
    return AnthillStore(create_anthill(url))


def obstore_s3() -> Any:
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    _, options, bucket, endpoint = s3_base()
    return ObjectStore(
        S3Store(
            bucket,
            prefix=f"w4-obstore-{uuid.uuid4().hex}",
            endpoint=endpoint,
            region=options.get("region", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            client_options={"allow_http": endpoint.startswith("http://")},
        )
    )


SIDES: dict[str, Callable[[], Any]] = {
    "anthill_folder": anthill_folder,
    "local_store": local_store,
    "anthill_s3": anthill_s3,
    "obstore_s3": obstore_s3,
}


def main() -> None:
    os.environ["ANTHILL_SECRET"] = SECRET  # before the workers start
    import dask.array as da
    import numpy as np
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    values = ARRAY_BYTES // 8
    array = da.random.RandomState(0).random_sample(values, chunks=CHUNK_VALUES)
    expected = float(array.sum().compute())
    runs: dict[str, list[float]] = {name: [] for name in SIDES}
    capped: dict[str, list[bool]] = {name: [] for name in SIDES}
    names = list(SIDES)
    try:
        for round_number in range(ROUNDS):
            turn = round_number % len(names)
            for name in names[turn:] + names[:turn]:
                store = SIDES[name]()
                started = time.perf_counter()
                stored = da.to_zarr(array, store, component="x", compressors=None, compute=False)
                writing = client.compute(stored)
                try:
                    writing.result(timeout=CAP_S)
                    finished = True
                except TimeoutError:
                    client.cancel(writing)
                    finished = False
                seconds = time.perf_counter() - started
                if finished:
                    total = float(da.from_zarr(store, component="x").sum().compute())
                    if not np.isclose(total, expected, rtol=1e-9):
                        raise RuntimeError(f"{name}: read back a sum of {total}, not {expected}")
                else:
                    time.sleep(5)  # the chunks the workers were storing when cancelled
                runs[name].append(seconds)
                capped[name].append(not finished)
                note = "" if finished else " (cancelled: not finished)"
                print(f"[w] W4 {name}: {seconds:.2f} s{note}", file=sys.stderr, flush=True)
    finally:
        client.close()
        cluster.close()
    emit(
        {
            "array_bytes": values * 8,
            "chunk_bytes": CHUNK_VALUES * 8,
            "chunks": -(-values // CHUNK_VALUES),
            "workers": WORKERS,
            "rounds": ROUNDS,
            "cap_s": CAP_S,
            "runs_s": runs,
            "capped": capped,
            "best_s": {name: min(seconds) for name, seconds in runs.items()},
            # Whether every round of a side was cancelled: its best time is a lower bound.
            "all_capped": {name: all(c) for name, c in capped.items()},
        }
    )


if __name__ == "__main__":
    main()
