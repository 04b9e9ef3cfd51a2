"""Crash harness: writer processes doing put / overwrite /
remove loops on one local store are killed with SIGKILL at random instants;
after each kill the store must reopen with its crash promises kept: every
item stored before stays readable and intact, and the interrupted operation's
key is absent, pending or complete, never half-present.

CI runs a bounded version through ``test_crash.py``; the full run is

    python tests_py/crash_harness.py --kills 250 --seed 1

which prints a summary (and ``scripts/reliability.sh`` writes it to
``docs/reliability.md``).

Instants: the writer prints ``BEGIN`` right before each operation; the
harness kills it after a random number of lines, so kills land before, inside
and right after operations (the kill arrives while the Rust core is working).
No clock is involved, so a seed reproduces the same kill points.

Torn overwrites (``--torn``): the store is opened through ``sim+`` with
``torn_overwrites=true``, a model of a service (Garage 2.x) on which an
overwrite interrupted by the writer's death leaves neither the old object nor
the new one (docs/s3.md): a pad's versions then alternate between two objects,
so a kill in the middle of rewriting a pad must lose nothing either.

Write-back: items below a pad are committed in the index log and their
pads written back later (when full, on ``flush()``, at close). Most items
here are that small, the writer calls ``flush()`` now and
then, and some rounds kill right after a ``flush`` line, so kills land while
pads are written back. Every reopen must read what the log alone held, and
its close must write it back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SECRET = "crash-harness-secret"
# Items below PAD_SIZE go through the log first.
PAD_SIZE = 16384

WRITER = r"""
import hashlib, json, random, sys
import anthill

path, seed, pad_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
store = anthill.open(path, pad_size=pad_size)  # the secret: $ANTHILL_SECRET

def value(tag, size):
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]

for i in range(10_000):
    keys = list(store.keys())
    roll = rng.random()
    if keys and roll < 0.2:
        key = rng.choice(keys)
        print(json.dumps({"op": "remove", "key": key}), flush=True)
        store.remove_item(key)
    elif roll < 0.28:
        print(json.dumps({"op": "flush"}), flush=True)
        store.flush()
    else:
        key = rng.choice(keys) if keys and roll < 0.5 else f"k{seed}-{i}"
        # Mostly below a pad (the log-first path), some spanning pads.
        size = rng.choice([0, 1, 100, 100, 500, 500, 1024, 1024, 3000, 16384, 40000, 9 * 16384 + 17])
        tag = f"{seed}-{i}"
        print(json.dumps({"op": "put", "key": key, "tag": tag, "size": size}), flush=True)
        store.store_item(key, value(tag, size), overwrite=True)
    print(json.dumps({"op": "done"}), flush=True)
"""


def value(tag: str, size: int) -> bytes:
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]


@dataclass
class Report:
    kills: int = 0
    kills_mid_operation: int = 0
    kills_mid_flush: int = 0
    reopened_unflushed: int = 0
    operations_done: int = 0
    items_checked: int = 0
    pending_resumed: int = 0
    failures: list[str] = field(default_factory=list)


# A few milliseconds per request: kills land inside pad writes.
TORN_QUERY = "latency_ms=3&torn_overwrites=true"


def run(kills: int, seed: int, folder: Path | None = None, torn: bool = False) -> Report:
    import anthill

    rng = random.Random(seed)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        store_path = str(folder or Path(tmp) / "store")
        store_url = f"sim+file://{store_path}?{TORN_QUERY}" if torn else store_path
        expected: dict[str, bytes] = {}
        for round_number in range(kills):
            writer = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WRITER,
                    store_url,
                    str(seed * 100_000 + round_number),
                    str(PAD_SIZE),
                ],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "ANTHILL_SECRET": SECRET},
            )
            assert writer.stdout is not None
            lines_before_kill = rng.randint(1, 60)
            # Some rounds wait for a flush to begin, then kill: mid write-back.
            kill_in_flush = rng.random() < 0.3
            in_flight: dict | None = None

            def follow(line: str) -> None:
                nonlocal in_flight
                event = json.loads(line)
                if event["op"] == "done":
                    apply(expected, in_flight)
                    report.operations_done += 1
                    in_flight = None
                else:
                    in_flight = event

            for lines in range(lines_before_kill + 200):
                line = writer.stdout.readline()
                if not line:
                    break
                follow(line)
                flushing = in_flight is not None and in_flight["op"] == "flush"
                if lines + 1 >= lines_before_kill and (flushing or not kill_in_flush):
                    break
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            # The writer ran on until the signal landed: what it printed
            # meanwhile happened too (a busy machine leaves it several
            # operations ahead of this reader).
            for line in writer.stdout:
                if line.endswith("\n"):  # not cut short by the kill
                    follow(line)
            writer.stdout.close()
            report.kills += 1
            report.kills_mid_operation += in_flight is not None
            report.kills_mid_flush += in_flight is not None and in_flight["op"] == "flush"
            try:
                check(store_url, store_path, expected, in_flight, report)
            except AssertionError as failure:
                report.failures.append(f"round {round_number}: {failure}")
                break
            except anthill.AnthillError as failure:  # an item lost, a pad gone
                report.failures.append(f"round {round_number}: {type(failure).__name__}: {failure}")
                break
    return report


def apply(expected: dict[str, bytes], event: dict | None) -> None:
    if event is None:
        return
    if event["op"] == "flush":
        return
    if event["op"] == "remove":
        expected.pop(event["key"], None)
    else:
        expected[event["key"]] = value(event["tag"], event["size"])


def check(
    url: str, path: str, expected: dict[str, bytes], in_flight: dict | None, report: Report
) -> None:
    """Reopens the store (``url``, in the folder ``path``) and checks those
    promises; settles the key of the interrupted operation in ``expected``
    to what the store holds."""
    import anthill

    store = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    # Small items the killed writer had not written back yet, from its log.
    report.reopened_unflushed += store.unflushed_bytes() > 0
    uncertain = in_flight.get("key") if in_flight else None
    keys = set(store.keys())
    for key, data in expected.items():
        if key == uncertain:
            continue
        assert key in keys, f"{key} was stored and is gone"
        assert store.fetch_item(key) == data, f"{key} differs"
        report.items_checked += 1
    for key in keys - set(expected) - {uncertain}:
        raise AssertionError(f"{key} is present but was removed or never stored")
    if uncertain is not None:
        assert in_flight is not None
        settle(store, expected, in_flight, report)
    summary = store.summary()
    assert summary.pending == 0, f"pending uploads left: {summary.pending}"
    used = sum(len(data) for data in expected.values())
    assert summary.items == len(expected), (summary.items, len(expected))
    assert summary.used_space == used, f"used {summary.used_space} != items {used}"
    assert summary.used_space + summary.free_space == summary.total_space
    files = os.listdir(Path(path) / "p") if (Path(path) / "p").exists() else []
    # A pad's file, and where versions alternate the file of its odd ones.
    objects = [name for name in files if len(name.removesuffix(".odd")) == 32]
    pads = {name.removesuffix(".odd") for name in objects}
    # A folder pad's file comes with its first write, so a pad reserved by a
    # put killed before uploading is in the map without one. Files the map
    # does not know were adopted when the store was opened.
    assert len(pads) <= summary.total_pads, (
        f"{len(pads)} pads on disk, map knows {summary.total_pads}"
    )
    assert len(files) == len(objects), f"partial writes left behind: {set(files) - set(objects)}"
    store.close()
    # Closing wrote back everything the log alone held.
    again = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    assert again.unflushed_bytes() == 0, f"{again.unflushed_bytes()} bytes left unflushed"
    again.close()


def settle(store, expected: dict[str, bytes], event: dict, report: Report) -> None:
    """The interrupted operation's key: old value, new value, absent, or
    pending (then finished with resume=True). An interrupted overwrite of an
    item spanning pads can leave both: the old value readable and the new
    one pending."""
    import anthill

    key = event["key"]
    old = expected.get(key)
    new = value(event["tag"], event["size"]) if event["op"] == "put" else None
    try:
        found = store.fetch_item(key)
    except anthill.KeyNotFoundError:
        found = None
    # Pending: absent, or (an overwrite) still the old value beside it.
    if store.summary().pending:
        assert new is not None, "a remove left a pending upload"
        store.store_item(key, new, resume=True)
        report.pending_resumed += 1
        found = new
    allowed = [old, new] if event["op"] == "put" else [old, None]
    assert found in allowed or (found is None and event["op"] == "put"), (
        f"{key}: found {len(found or b'')} bytes, expected old or new"
    )
    if found is None:
        expected.pop(key, None)
    else:
        expected[key] = found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--torn", action="store_true", help="through sim+ with torn_overwrites=true"
    )
    args = parser.parse_args()
    report = run(args.kills, args.seed, torn=args.torn)
    print(json.dumps(report.__dict__, indent=2))
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
