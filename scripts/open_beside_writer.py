"""Opens a folder store again and again while another process stores small
items in a loop that never pauses; prints how many opens failed and how long
they took (issue 25: opening never waits for a writer, and a log listing
taken while the writer creates objects is no damage).

    python scripts/open_beside_writer.py [OPENS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anthill

WRITER = r"""
import os, sys, anthill
url, stop = sys.argv[1], sys.argv[2]
store = anthill.open(url, secret="s")
i = 0
while not os.path.exists(stop):
    store[f"k{i % 500}"] = b"x" * 200
    i += 1
    if i == 1:
        print("writing", flush=True)
print(i, flush=True)
store.close()
"""


def main() -> None:
    opens = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as tmp:
        url = f"file://{Path(tmp) / 's'}"
        anthill.open(url, secret="s").close()
        stop = Path(tmp) / "stop"
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(stop)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        times, errors = [], []
        for _ in range(opens):
            started = time.perf_counter()
            try:
                store = anthill.open(url, secret="s")
                store["k0"]
                store.close()
            except anthill.AnthillError as error:
                errors.append(f"{type(error).__name__}: {error}")
            times.append(time.perf_counter() - started)
        stop.touch()
        puts = int(writer.stdout.readline())
        writer.wait()
    print(f"{opens} opens beside a writer that stored {puts} items meanwhile")
    print(f"errors: {len(errors)}", *errors[:3], sep="\n  ")
    print(
        f"open + one get + close: median {statistics.median(times) * 1000:.0f} ms, "
        f"95th percentile {statistics.quantiles(times, n=20)[-1] * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
