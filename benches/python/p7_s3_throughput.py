"""P7 S3 throughput: anthill against obstore's `S3Store` on the same local
Garage cluster (3 nodes) and bucket, in the same run.

- a put and a get of one 256 MiB item (random bytes): anthill's
  `store_item` / `fetch_item` into a fresh store (default options, 4 MiB
  pads), obstore's `put` (its default: a multipart upload, 12 parts in
  flight) and `get(...).bytes()` of one object;
- 1,000 sequential 1 KiB puts: a sync loop of `store_item` into a fresh
  store, against a loop of `obstore.put` of distinct keys.

Each case runs 3 times (the order of the two sides alternating) and the
median is reported. Requests per operation come from Garage's own counters
(the `/metrics` of the node both clients talk to), read around each timed
part, so both sides are counted the same way, anthill's writer lease
included; so are the CPU seconds of this process and of the Garage nodes.

Needs `ANTHILL_TEST_S3_URL` and the `AWS_*` variables that
`scripts/garage.sh start 3` prints (scripts/bench.sh starts a cluster).
"""

from __future__ import annotations

import os
import resource
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anthill
import obstore
from common import KIB, MIB, QUICK, SECRET, emit, median, timed
from obstore.store import S3Store
from p7_s3_small_puts import garage_requests, minus

LARGE = 32 * MIB if QUICK else 256 * MIB
SMALL_PUTS = 100 if QUICK else 1000
RUNS = 3


def s3_base() -> tuple[str, dict[str, str], str, str]:
    """The store URL without its query, its options, the bucket and the endpoint."""
    url = os.environ.get("ANTHILL_TEST_S3_URL", "")
    if not url:
        raise SystemExit("ANTHILL_TEST_S3_URL is unset: start Garage (scripts/garage.sh start 3)")
    base, _, query = url.partition("?")
    options = dict(parse_qsl(query))
    endpoint = options.get("endpoint") or os.environ["AWS_ENDPOINT_URL"]
    bucket = base.removeprefix("s3://").split("/", 1)[0]
    return base.rstrip("/"), options, bucket, endpoint


def fresh_anthill() -> anthill.Store:
    base, options, _, _ = s3_base()
    query = "&".join(f"{k}={v}" for k, v in options.items())
    url = f"{base}/p7t-{uuid.uuid4().hex}" + (f"?{query}" if query else "")
    return anthill.open(url, secret=SECRET)


def fresh_obstore() -> S3Store:
    _, options, bucket, endpoint = s3_base()
    return S3Store(
        bucket,
        prefix=f"p7t-obstore-{uuid.uuid4().hex}",
        endpoint=endpoint,
        region=options.get("region", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        client_options={"allow_http": endpoint.startswith("http://")},
    )


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process, and by the Garage nodes
    (`GARAGE_PIDS`, from scripts/garage.sh; 0 where unknown)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    garage = 0.0
    for pid in os.environ.get("GARAGE_PIDS", "").split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        garage += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own.ru_utime + own.ru_stime, garage


def counted(endpoint: str, f: Callable[[], object]) -> tuple[float, dict[str, Any]]:
    """Seconds `f()` takes, and the S3 requests Garage served meanwhile with
    the CPU seconds the client and Garage used (as "client cpu s" and
    "garage cpu s"): on a machine of few cores, both compete for them."""
    before, cpu_before = garage_requests(endpoint), cpu_seconds()
    seconds = timed(f)
    after, cpu_after = garage_requests(endpoint), cpu_seconds()
    found: dict[str, Any] = {k: v for k, v in minus(after, before).items() if " " not in k and v}
    found["client cpu s"] = cpu_after[0] - cpu_before[0]
    found["garage cpu s"] = cpu_after[1] - cpu_before[1]
    return seconds, found


def anthill_large(data: bytes, endpoint: str) -> dict[str, Any]:
    store = fresh_anthill()
    try:
        put_s, put_requests = counted(endpoint, lambda: store.store_item("big", data))
        got: list[bytes] = []
        get_s, get_requests = counted(endpoint, lambda: got.append(store.fetch_item("big")))
        assert got[0] == data
    finally:
        store.close()
    return {"put_s": put_s, "get_s": get_s, "put_req": put_requests, "get_req": get_requests}


def obstore_large(data: bytes, endpoint: str) -> dict[str, Any]:
    store = fresh_obstore()
    put_s, put_requests = counted(endpoint, lambda: obstore.put(store, "big", data))
    got: list[Any] = []
    get_s, get_requests = counted(endpoint, lambda: got.append(obstore.get(store, "big").bytes()))
    assert bytes(got[0]) == data
    return {"put_s": put_s, "get_s": get_s, "put_req": put_requests, "get_req": get_requests}


def anthill_small(item: bytes, endpoint: str) -> dict[str, Any]:
    store = fresh_anthill()
    try:
        store.store_item("warm-up", item)  # the store's first put takes the lease, a pad

        def loop() -> None:
            for i in range(SMALL_PUTS):
                store.store_item(f"item/{i:06d}", item)

        seconds, requests = counted(endpoint, loop)
    finally:
        store.close()
    return {"s": seconds, "req": requests}


def obstore_small(item: bytes, endpoint: str) -> dict[str, Any]:
    store = fresh_obstore()
    obstore.put(store, "warm-up", item)  # the connection

    def loop() -> None:
        for i in range(SMALL_PUTS):
            obstore.put(store, f"item/{i:06d}", item)

    seconds, requests = counted(endpoint, loop)
    return {"s": seconds, "req": requests}


def main() -> None:
    _, _, _, endpoint = s3_base()
    item = os.urandom(KIB)
    runs: dict[str, list[dict[str, Any]]] = {
        "anthill_large": [],
        "obstore_large": [],
        "anthill_small": [],
        "obstore_small": [],
    }
    for run in range(RUNS):
        # New bytes each run: Garage stores a block once per content (by its
        # hash), so obstore's second put of the same 256 MiB wrote nothing
        # (measured: 46 MiB/s the first run, 107 and 99 after). anthill's
        # are sealed anew by each put anyway.
        data = os.urandom(LARGE)
        sides = ("anthill", "obstore") if run % 2 == 0 else ("obstore", "anthill")
        for side in sides:
            if side == "anthill":
                runs["anthill_large"].append(anthill_large(data, endpoint))
                runs["anthill_small"].append(anthill_small(item, endpoint))
            else:
                runs["obstore_large"].append(obstore_large(data, endpoint))
                runs["obstore_small"].append(obstore_small(item, endpoint))
    result: dict[str, Any] = {
        "large_bytes": LARGE,
        "small_puts": SMALL_PUTS,
        "item_bytes": len(item),
        "runs": runs,
    }
    for side in ("anthill", "obstore"):
        large, small = runs[f"{side}_large"], runs[f"{side}_small"]
        result[f"{side}_put_s"] = median([r["put_s"] for r in large])
        result[f"{side}_get_s"] = median([r["get_s"] for r in large])
        result[f"{side}_small_s"] = median([r["s"] for r in small])
        # Requests of the last run (they hardly vary between runs).
        result[f"{side}_put_req"] = large[-1]["put_req"]
        result[f"{side}_get_req"] = large[-1]["get_req"]
        result[f"{side}_small_req"] = small[-1]["req"]
    emit(result)


if __name__ == "__main__":
    main()
