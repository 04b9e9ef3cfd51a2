"""Many writers at once (the W rows): N writer processes started together
(a barrier), each storing its own keys into one shared store for a fixed
time, and their aggregate throughput.

One case is (side, target, N, item size): the parent makes the target
(a fresh folder, store or prefix) and starts N processes (spawned, not
forked: a forked child would inherit the parent's runtime threads). Each
opens its own handle on the target, stores one untimed warm-up item (the
connection, the store's first put), waits at the barrier, then puts items
of its own keys (`w<i>/<n>`) one after another until `duration` seconds
have passed since the barrier, and reports when it started, when its last
put returned and how many it made. The aggregate is all puts over the
span from the first start to the last end, so a put that began before the
deadline and returned long after it (a writer queueing for a lock) counts
in full, and so does its wait. Closing (anthill's write-back of what its
log holds) comes after and is timed apart.

`run_cases` runs every case of a row in rounds: in each round every N,
and for each N every side, in an order that rotates from round to round,
so that a burst of load from elsewhere on a shared machine falls on all
sides alike. A side's figure is its best round (load from elsewhere only
adds time); all rounds are reported.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import SCRATCH, SECRET

#: One writer's put and close, made in the writer's process.
Opened = tuple[Callable[[str, bytes], object], Callable[[], object]]

WRITERS = (1, 2, 4)


def open_anthill(target: str) -> Opened:
    import anthill

    store = anthill.open(target, secret=SECRET)
    return store.store_item, store.close


def open_diskcache(target: str) -> Opened:
    import diskcache

    cache = diskcache.Cache(target)
    return cache.set, cache.close


def open_obstore_local(target: str) -> Opened:
    import obstore
    from obstore.store import LocalStore

    store = LocalStore(target)
    return (lambda key, data: obstore.put(store, key, data)), (lambda: None)


def open_obstore_s3(target: str) -> Opened:
    """`target` is `<bucket>/<prefix>`; endpoint and credentials come from
    the `AWS_*` variables scripts/garage.sh prints."""
    import obstore
    from obstore.store import S3Store

    bucket, prefix = target.split("/", 1)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    store = S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=os.environ.get("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "garage")),
        client_options={"allow_http": endpoint.startswith("http://")},
    )
    return (lambda key, data: obstore.put(store, key, data)), (lambda: None)


OPENERS: dict[str, Callable[[str], Opened]] = {
    "anthill": open_anthill,
    "diskcache": open_diskcache,
    "obstore_local": open_obstore_local,
    "obstore_s3": open_obstore_s3,
}


def writer(
    side: str,
    target: str,
    index: int,
    item_bytes: int,
    duration: float,
    barrier: Any,
    results: Any,
) -> None:
    """One writer process (see the module's comment)."""
    try:
        data = os.urandom(item_bytes)
        put, close = OPENERS[side](target)
        put(f"w{index}/warm-up", data)
        barrier.wait()
        start = time.monotonic()
        deadline = start + duration
        puts = 0
        while time.monotonic() < deadline:
            put(f"w{index}/{puts:07d}", data)
            puts += 1
        end = time.monotonic()
        close()
        closed = time.monotonic()
        results.put(
            {"index": index, "start": start, "end": end, "puts": puts, "close_s": closed - end}
        )
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the case
        barrier.abort()
        results.put({"index": index, "error": f"{type(error).__name__}: {error}"})


def run_case(
    side: str, target: str, writers: int, item_bytes: int, duration: float, timeout: float
) -> dict[str, Any]:
    """N writer processes on one target; their aggregate throughput."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(writers)
    results = context.Queue()
    processes = [
        context.Process(
            target=writer, args=(side, target, i, item_bytes, duration, barrier, results)
        )
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    reports: list[dict[str, Any]] = []
    give_up = time.monotonic() + timeout
    try:
        while len(reports) < writers:
            try:
                reports.append(results.get(timeout=max(0.1, give_up - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(
                    f"{side}, {writers} writers: no result within {timeout:.0f} s"
                ) from None
    finally:
        for process in processes:
            process.join(timeout=max(1.0, give_up - time.monotonic()))
            if process.is_alive():
                process.kill()  # only our own writers, by their handles
                process.join()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError(f"{side}, {writers} writers: {errors[0]}")
    first = min(r["start"] for r in reports)
    last = max(r["end"] for r in reports)
    puts = sum(r["puts"] for r in reports)
    return {
        "side": side,
        "writers": writers,
        "item_bytes": item_bytes,
        "puts": puts,
        "span_s": last - first,
        "puts_per_s": puts / (last - first),
        "per_writer": sorted(r["puts"] for r in reports),
        "close_s": max(r["close_s"] for r in reports),
    }


def run_cases(
    sides: dict[str, Callable[[], str]],
    item_bytes: int,
    duration: float,
    rounds: int,
    timeout: float = 300,
) -> dict[str, Any]:
    """Every side at every N in `rounds` interleaved rounds. `sides` maps a
    side (a key of OPENERS) to a function making a fresh target for one case. Returns, per side and N, every round's
    case and the best round's aggregate puts/s."""
    cases: dict[str, dict[int, list[dict[str, Any]]]] = {s: {n: [] for n in WRITERS} for s in sides}
    names = list(sides)
    for round_number in range(rounds):
        for writers in WRITERS:
            turn = round_number % len(names)
            for name in names[turn:] + names[:turn]:
                case = run_case(name, sides[name](), writers, item_bytes, duration, timeout)
                cases[name][writers].append(case)
                print(
                    f"[w] {name} N={writers} {item_bytes} B: {case['puts_per_s']:,.1f} puts/s "
                    f"({case['puts']} puts in {case['span_s']:.2f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    best = {
        name: {str(n): max(c["puts_per_s"] for c in by_n[n]) for n in WRITERS}
        for name, by_n in cases.items()
    }
    rounds_out = {
        name: {str(n): [c["puts_per_s"] for c in by_n[n]] for n in WRITERS}
        for name, by_n in cases.items()
    }
    last = {name: {str(n): by_n[n][-1] for n in WRITERS} for name, by_n in cases.items()}
    return {
        "item_bytes": item_bytes,
        "duration_s": duration,
        "rounds": rounds,
        "best": best,
        "runs": rounds_out,
        "last": last,
    }


def create_anthill(url: str) -> str:
    """Creates the store at `url` (so that writers open it, not race to
    make it) and returns `url`."""
    import anthill

    anthill.open(url, secret=SECRET).close()
    return url


#: The folders this process made (see `fresh_folder`).
MADE: list[str] = []
#: Where they go when it exits: beside the scratch folder (the same file
#: system, so a rename), outside it, so that the next run does not wait for them.
TRASH = SCRATCH.with_name(f"{SCRATCH.name}-trash")


def fresh_folder(name: str) -> str:
    """A fresh folder under the scratch folder, removed after this process
    exits (not between cases: see common.scratch_dir)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"{name}-", dir=SCRATCH)
    if not MADE:
        atexit.register(remove_in_background)
    MADE.append(path)
    return path


def remove_in_background() -> None:
    """Moves the folders made to TRASH and removes them there in a process
    of their own, at idle I/O priority. A W1 run leaves some 10^5 small
    files, and on a disk mounted with `discard` (this machine's) each unlink
    waits for the device: removing them in line took many minutes, while
    the rows after it would only be slowed by a removal competing for the
    disk at normal priority."""
    TRASH.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in MADE:
        target = TRASH / Path(path).name
        try:
            os.rename(path, target)
            moved.append(str(target))
        except OSError:  # another file system: removed where it is
            moved.append(path)
    command = ["rm", "-rf", "--", *moved]
    if shutil.which("ionice"):
        command = ["ionice", "-c", "3", *command]
    subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
