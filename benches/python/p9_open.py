"""P9 open time: opening a local folder store with 10^6 keys (64-byte
items) and fetching one item, against the same with 10^3 keys; and
`anthill get` of one item as a whole process on each.

A store of 10^4 keys or more keeps a local copy of its index (in the state
folder) from the first open on: the runs are timed after that first open,
which is reported on its own.

The two stores are built once under the scratch folder (`kept/p9-<keys>`,
which the suite does not clear: filling 10^6 keys takes minutes) through `store_item_async`
in `asyncio.gather` batches, then flushed and closed, so each holds a
checkpoint and the log after it as a long-lived store does. A store whose
marker file is missing (an interrupted build) is built again. Each timed
run is a fresh process: `open` + `fetch_item` of one key, timed inside it
after `import anthill`, and separately the wall time of the whole
`anthill get` process (interpreter start and import included, which are
the same for both stores). Runs alternate between the stores, so load from
elsewhere falls on both alike; the figure is the median.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthill
from common import QUICK, SCRATCH, SECRET, emit

SMALL = 1_000
LARGE = 10_000 if QUICK else 1_000_000
RUNS = 3 if QUICK else 7
BATCH = 5_000
ITEM = bytes(range(64))
MARKER = "p9-complete"

OPEN_AND_FETCH = r"""
import sys, time
import anthill
started = time.perf_counter()
store = anthill.open(sys.argv[1], secret=sys.argv[2])
value = store.fetch_item(sys.argv[3])
elapsed = time.perf_counter() - started
assert len(value) == 64, len(value)
store.close()
print(elapsed)
"""


def key(i: int) -> str:
    return f"item/{i:07d}"


async def fill(store: anthill.Store, count: int) -> None:
    for first in range(0, count, BATCH):
        keys = range(first, min(first + BATCH, count))
        await asyncio.gather(*(store.store_item_async(key(i), ITEM) for i in keys))


def built(keys: int) -> tuple[Path, float | None]:
    """The store of `keys` items, built unless a complete one is there;
    the seconds building took, if it was built now."""
    path = SCRATCH / "kept" / f"p9-{keys}"
    if (path / MARKER).exists():
        return path, None
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    started = time.perf_counter()
    store = anthill.open(str(path / "store"), secret=SECRET)
    asyncio.run(fill(store, keys))
    store.flush()
    store.close()
    (path / MARKER).write_text(f"{keys}\n")
    return path, time.perf_counter() - started


def open_and_fetch(path: Path, env: dict[str, str]) -> float:
    command = [sys.executable, "-c", OPEN_AND_FETCH, str(path / "store"), SECRET, key(1)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def cli_get(path: Path, env: dict[str, str]) -> float:
    cli = [sys.executable, "-c", "import sys; from anthill.cli import main; sys.exit(main())"]
    command = [*cli, "--store", str(path / "store"), "get", key(1), "-o", os.devnull]
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    small, small_build = built(SMALL)
    large, large_build = built(LARGE)
    # A state folder of this run's own: the first open of each store finds
    # no local index cache, loads the index from the store and keeps one.
    state = tempfile.mkdtemp(prefix="p9-state-", dir=SCRATCH)
    env = {**os.environ, "ANTHILL_SECRET": SECRET, "XDG_STATE_HOME": state}
    first = {name: open_and_fetch(path, env) for name, path in (("small", small), ("large", large))}
    runs: dict[str, list[float]] = {"small": [], "large": [], "small_cli": [], "large_cli": []}
    for _ in range(RUNS):
        for name, path in (("small", small), ("large", large)):
            runs[name].append(open_and_fetch(path, env))
            runs[f"{name}_cli"].append(cli_get(path, env))
    emit(
        {
            "small_keys": SMALL,
            "large_keys": LARGE,
            "build_s": {"small": small_build, "large": large_build},
            "runs": RUNS,
            "runs_s": runs,
            "first_s": first,
            **{f"{name}_s": statistics.median(values) for name, values in runs.items()},
        }
    )


if __name__ == "__main__":
    main()
