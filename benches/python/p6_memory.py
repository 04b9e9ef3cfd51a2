"""P6 memory: the peak resident set of a process that puts a 1 GiB `bytes`
object into a local folder store, against input + 40 pads + 50 MiB.

Run in a process of its own (the suite starts one per benchmark), so the
peak (`ru_maxrss`) is this put's and nothing else's. The data come from
`os.urandom` (every page touched, nothing compressible); the baseline
(interpreter and anthill loaded, before the data exist) is reported beside.
"""

from __future__ import annotations

import os
import resource

import anthill
from common import GIB, MIB, PAD_SIZE, QUICK, SECRET, emit, scratch_dir, sync_disk

SIZE = 128 * MIB if QUICK else GIB


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    baseline = rss_bytes()
    data = os.urandom(SIZE)
    with scratch_dir("p6-anthill") as folder:
        store = anthill.open(folder.as_uri(), secret=SECRET, pad_size=PAD_SIZE)
        sync_disk()
        before = rss_bytes()
        peak_before = peak_bytes()
        store.store_item("big", data)
        peak = peak_bytes()
        store.close()
    emit(
        {
            "input_bytes": SIZE,
            "pad_size": PAD_SIZE,
            "baseline_rss": baseline,
            "rss_before_put": before,
            "peak_before_put": peak_before,
            "peak_rss": peak,
            "bound": SIZE + 40 * PAD_SIZE + 50 * MIB,
        }
    )


if __name__ == "__main__":
    main()
