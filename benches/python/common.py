"""Helpers shared by the Python benchmarks: the scratch folder on the
benchmark disk, timing, and printing one JSON result."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SECRET = "anthill benchmark secret"
PAD_SIZE = 4 << 20
KIB = 1024
MIB = 1 << 20
GIB = 1 << 30

#: Where every on-disk benchmark writes: the repository's disk, under the
#: benches' ignored target folder (scripts/bench.sh may point it elsewhere).
SCRATCH = Path(
    os.environ.get("ANTHILL_BENCH_SCRATCH", Path(__file__).parents[1] / "target" / "scratch")
)

QUICK = "--quick" in sys.argv


@contextmanager
def scratch_dir(name: str, remove_at_exit: bool = False) -> Iterator[Path]:
    """A fresh folder under SCRATCH, removed afterwards, or when the process
    exits if `remove_at_exit`: on a file system that is slow to create files
    after many were deleted (ext4 without a journal skips the inodes freed
    in the last minutes, one by one), deleting one case's thousands of files
    would slow the next case's creations down."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=SCRATCH))
    try:
        yield path
    finally:
        if remove_at_exit:
            atexit.register(shutil.rmtree, path, ignore_errors=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def timed(f: Callable[[], object]) -> float:
    """Seconds `f()` takes."""
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def sync_disk() -> None:
    """Flushes dirty pages so that one measurement's writeback does not
    land in the next one's time."""
    os.sync()


def emit(result: dict[str, object]) -> None:
    import anthill

    # Which build was measured (the suite checks it is the release build).
    result["anthill_module"] = anthill.__file__
    print(json.dumps(result))
