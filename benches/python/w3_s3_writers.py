"""W3 many writers on S3: N = 1, 2, 4 writer processes started together,
each with its own handle on one anthill store on a local Garage cluster of
3 nodes (scripts/garage.sh), each storing its own keys: a sync loop of
1 KiB puts, and one of 1 MiB puts; against obstore's `S3Store` (`obstore.put`,
one object per key) with the same N processes on the same bucket. Every
case gets a fresh prefix; the harness is writers.py.

Needs `ANTHILL_TEST_S3_URL` and the `AWS_*` variables that
`scripts/garage.sh start 3` prints (scripts/bench.sh starts a cluster).
"""

from __future__ import annotations

import uuid

from common import KIB, MIB, QUICK, emit
from p7_s3_throughput import s3_base
from writers import create_anthill, run_cases

DURATION_S = 1.0 if QUICK else 3.0
ROUNDS = 1 if QUICK else 2


def anthill_store() -> str:
    base, options, _, _ = s3_base()
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return create_anthill(f"{base}/w3-{uuid.uuid4().hex}" + (f"?{query}" if query else ""))


def obstore_prefix() -> str:
    _, _, bucket, _ = s3_base()
    return f"{bucket}/w3-obstore-{uuid.uuid4().hex}"


def main() -> None:
    sides = {"anthill": anthill_store, "obstore_s3": obstore_prefix}
    result = {
        "nodes": 3,
        "small": run_cases(sides, KIB, DURATION_S, ROUNDS),
        "large": run_cases(sides, MIB, DURATION_S, ROUNDS),
    }
    emit(result)


if __name__ == "__main__":
    main()
