"""P7 small puts on S3: the requests and bytes one 1 KiB put sends to a
local Garage cluster (3 nodes), in a sync loop of 200 puts.

Needs `ANTHILL_TEST_S3_URL` and the `AWS_*` credentials that
`scripts/garage.sh start 3` prints (scripts/bench.sh starts a cluster of its
own). The store is `sim+s3://…` under a fresh prefix: the sim wrapper adds no
latency and counts every object call anthill makes, with its payload bytes.
Garage's own counters (its admin endpoint's `/metrics`, of the node anthill
talks to) count the HTTP requests it received by S3 operation, which also
covers what the sim does not see: the writer lease's objects. Both are
read after the store is opened (so its creation is left out), after the
loop, and after `close()`, which writes back the pads the loop left dirty.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anthill
from common import KIB, PAD_SIZE, QUICK, SECRET, emit

PUTS = 50 if QUICK else 200
WRITE_KINDS = ("put", "reserve", "durable_put")
OTHER_KINDS = ("verify", "get", "list", "delete")


def store_url() -> tuple[str, str]:
    """A fresh `sim+s3://` store URL, and the S3 endpoint it talks to."""
    url = os.environ.get("ANTHILL_TEST_S3_URL", "")
    if not url:
        raise SystemExit("ANTHILL_TEST_S3_URL is unset: start Garage (scripts/garage.sh start 3)")
    base, _, query = url.partition("?")
    options = dict(parse_qsl(query))
    endpoint = options.get("endpoint") or os.environ["AWS_ENDPOINT_URL"]
    fresh = f"sim+{base.rstrip('/')}/p7-{uuid.uuid4().hex}"
    return f"{fresh}?{urlencode(options, safe=':/')}" if options else fresh, endpoint


def garage_requests(endpoint: str) -> dict[str, int]:
    """S3 requests the Garage node at `endpoint` has served, by operation
    (its admin API listens 3 ports above its S3 API, see scripts/garage.sh);
    empty where there is no such API."""
    host, port = endpoint.rsplit(":", 1)
    try:
        with urllib.request.urlopen(f"{host}:{int(port) + 3}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except (OSError, ValueError):
        return {}  # not a scripts/garage.sh cluster: the sim's counts only
    pattern = r'^api_s3_request_counter\{api_endpoint="(\w+)"\} (\d+)'
    found = {name: int(count) for name, count in re.findall(pattern, text, re.MULTILINE)}
    # And the seconds Garage spent answering them, as "<operation> s".
    pattern = r'^api_s3_request_duration_sum\{api_endpoint="(\w+)"\} ([0-9.e+-]+)'
    for name, spent in re.findall(pattern, text, re.MULTILINE):
        found[f"{name} s"] = float(spent)
    return found


def sim_counts(store: anthill.Store) -> dict[str, tuple[int, int]]:
    stats = store.backend_stats()
    assert stats is not None
    return {
        kind: (getattr(stats, kind).calls, getattr(stats, kind).bytes)
        for kind in WRITE_KINDS + OTHER_KINDS
    }


def minus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    def sub(a: Any, b: Any) -> Any:  # a pair of counts, or one count
        return [x - y for x, y in zip(a, b)] if isinstance(a, tuple) else a - b

    return {
        k: sub(v, before.get(k, (0, 0) if isinstance(v, tuple) else 0)) for k, v in after.items()
    }


def main() -> None:
    url, endpoint = store_url()
    data = bytes(range(256)) * (KIB // 256)
    store = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    sim_start, garage_start = sim_counts(store), garage_requests(endpoint)
    started = time.perf_counter()
    for i in range(PUTS):
        store.store_item(f"item/{i:06d}", data)
    seconds = time.perf_counter() - started
    sim_loop, garage_loop = sim_counts(store), garage_requests(endpoint)
    unflushed = store.unflushed_bytes()
    store.close()
    sim_end, garage_end = sim_counts(store), garage_requests(endpoint)
    with anthill.open(url, secret=SECRET) as again:
        assert again[f"item/{PUTS - 1:06d}"] == data
    emit(
        {
            "puts": PUTS,
            "item_bytes": len(data),
            "pad_size": PAD_SIZE,
            "loop_s": seconds,
            "unflushed_after_loop": unflushed,
            "sim_loop": minus(sim_loop, sim_start),
            "sim_close": minus(sim_end, sim_loop),
            "garage_loop": minus(garage_loop, garage_start),
            "garage_close": minus(garage_end, garage_loop),
        }
    )


if __name__ == "__main__":
    main()
