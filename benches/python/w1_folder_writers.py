"""W1 many writers on a folder: N = 1, 2, 4 writer processes started
together, each a sync loop of 1 KiB puts of its own keys into one shared
local folder store (`store_item`, default options), against diskcache
(`diskcache.Cache(folder).set`, its defaults: SQLite in WAL mode, no fsync
per set) and obstore's `LocalStore` (`obstore.put`, one file per key, no
fsync) with the same N processes on a folder of their own. Every case gets
a fresh folder on the same disk; the harness is writers.py.
"""

from __future__ import annotations

from common import KIB, QUICK, emit
from writers import create_anthill, fresh_folder, run_cases

DURATION_S = 0.5 if QUICK else 1.0
ROUNDS = 2 if QUICK else 3


def main() -> None:
    result = run_cases(
        {
            "anthill": lambda: create_anthill(f"file://{fresh_folder('w1-anthill')}"),
            "diskcache": lambda: fresh_folder("w1-diskcache"),
            "obstore_local": lambda: fresh_folder("w1-obstore"),
        },
        item_bytes=KIB,
        duration=DURATION_S,
        rounds=ROUNDS,
    )
    emit(result)


if __name__ == "__main__":
    main()
