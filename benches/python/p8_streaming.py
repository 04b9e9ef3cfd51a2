"""P8 streaming: items larger than memory.

1. Peak RSS of `store_file` and then `fetch_file` of a 16 GiB file (sparse
   but for a marked 4 KiB every 64 MiB; 512 MiB with --quick) into a local
   folder store, above the process's baseline (interpreter and anthill
   loaded, the runtime warmed up by a small put). Each is measured in a
   process of its own, so its peak (`ru_maxrss`) is that call's alone.
2. Throughput of the streaming calls against the in-memory ones on the same
   1 GiB of random data (128 MiB with --quick): `store_file(path)` against
   `store_item(bytes)`, `fetch_file(path)` against `fetch_item`, medians of 3;
   and against the in-memory way of doing what they do, file to store and
   store to file: `store_item(path.read_bytes())` and
   `path.write_bytes(fetch_item())`.
3. Pads read by a 1 KiB `fetch_range` in the middle of the large item
   (`backend_stats().get.calls` of a `sim+file://` store, which adds no
   latency).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import anthill
from common import GIB, MIB, PAD_SIZE, QUICK, SECRET, emit, median, scratch_dir, sync_disk, timed

LARGE = 512 * MIB if QUICK else 16 * GIB
SAME = 128 * MIB if QUICK else GIB
MARK_EVERY = 64 * MIB


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(action: str, url: str, path: str) -> None:
    """One measured call in a fresh process: prints baseline and peak."""
    store = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    store.store_item("warm-up", b"w" * (8 * MIB), overwrite=True)
    store.fetch_item("warm-up")
    baseline = peak_bytes()
    result: dict[str, int] = {}
    if action == "put":
        store.store_file("large", path)
    elif action == "get":
        result["written"] = store.fetch_file("large", path)
    else:
        stats = store.backend_stats()
        assert stats is not None
        before = stats.get.calls
        middle = LARGE // 2 + 12345
        store.fetch_range("large", middle, 1024)
        stats = store.backend_stats()
        assert stats is not None
        result["gets"] = stats.get.calls - before
    result.update(baseline=baseline, peak=peak_bytes())
    store.close()
    print(json.dumps(result))


def run_child(action: str, url: str, path: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", action, url, str(path)]
        + (["--quick"] if QUICK else []),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def large_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for at in range(0, size, MARK_EVERY):
            f.seek(at)
            f.write(at.to_bytes(8, "little") * 512)
        f.truncate(size)


def memory_and_range() -> dict[str, object]:
    with scratch_dir("p8-large") as folder:
        source = folder / "large.bin"
        large_file(source, LARGE)
        url = f"sim+{(folder / 'store').as_uri()}"
        sync_disk()
        put = run_child("put", url, source)
        source.unlink()  # room for the copy fetched back
        dest = folder / "restored.bin"
        sync_disk()
        get = run_child("get", url, dest)
        restored_ok = dest.stat().st_size == LARGE
        with dest.open("rb") as f:
            for at in range(0, LARGE, MARK_EVERY):
                f.seek(at)
                restored_ok &= f.read(4096) == at.to_bytes(8, "little") * 512
        dest.unlink()
        ranged = run_child("range", url, dest)
    return {
        "large_bytes": LARGE,
        "put_baseline": put["baseline"],
        "put_peak": put["peak"],
        "get_baseline": get["baseline"],
        "get_peak": get["peak"],
        "get_written": get["written"],
        "restored_ok": restored_ok,
        "range_gets": ranged["gets"],
    }


def times_one(
    how: str,
    store_folder: Path,
    data: bytes,
    source: Path,
    out: Path,
    times: dict[str, list[float]],
) -> None:
    """One round of one way: the put, then the get, into a fresh store."""
    store = anthill.open(store_folder.as_uri(), secret=SECRET, pad_size=PAD_SIZE)
    sync_disk()
    if how == "store_item":
        times[how].append(timed(lambda: store.store_item("k", data)))
        times["fetch_item"].append(timed(lambda: store.fetch_item("k")))
        # The in-memory way from a file and to a file: read it whole, put
        # the bytes; fetch the bytes, write them whole.
        store.remove_item("k")
        times["file_store_item"].append(timed(lambda: store.store_item("k", source.read_bytes())))
        times["fetch_item_file"].append(timed(lambda: out.write_bytes(store.fetch_item("k"))))
        out.unlink()
    else:
        times[how].append(timed(lambda: store.store_file("k", source)))
        times["fetch_file"].append(timed(lambda: store.fetch_file("k", out)))
        out.unlink()
    store.close()


def throughput() -> dict[str, object]:
    data = os.urandom(SAME)
    times: dict[str, list[float]] = {
        "file_store_item": [],
        "fetch_item_file": [],
        "store_item": [],
        "store_file": [],
        "fetch_item": [],
        "fetch_file": [],
    }
    with scratch_dir("p8-same") as folder:
        source = folder / "same.bin"
        source.write_bytes(data)
        source.read_bytes()  # in the page cache, as `data` is in memory
        for round_ in range(3):
            for how in ("store_item", "store_file"):
                with scratch_dir(f"p8-{how}") as store_folder:
                    times_one(how, store_folder, data, source, folder / f"out-{round_}", times)
    return {
        "same_bytes": SAME,
        **{f"{how}_s": median(values) for how, values in times.items()},
    }


def main() -> None:
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        child(*sys.argv[at + 1 : at + 4])
        return
    emit({**memory_and_range(), **throughput()})


if __name__ == "__main__":
    main()
