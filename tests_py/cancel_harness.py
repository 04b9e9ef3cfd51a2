"""Cancellation harness (R10): puts, overwrites, removes, renames, flushes and
compactions cancelled at random instants, by the three ways a user stops a
call: an ``asyncio`` cancellation (``wait_for`` timing out), a Ctrl-C
(SIGINT, while a sync call runs), and a SIGKILL of the whole process. After
each round a fresh process checks that every item whose call returned reads
back, that an interrupted call's key holds its old or its new value (never
anything else, never an error), that nothing else was damaged
(``verify(deep=True)``), and that the store still takes writes.

CI runs a bounded version through ``test_cancellation.py``; the full run is

    python tests_py/cancel_harness.py --cancellations 500 --seed 1

which prints a summary (``scripts/reliability.sh`` writes it to
``docs/reliability.md``).

The store is a folder behind ``sim+`` with a few milliseconds of latency per
request, so a call is under way for a while and an interruption can land
before, inside or after any of its steps (its log write, its pad writes,
a write-back, a compaction's moves). Every round is bounded: a worker that
stops answering for ``HANG_SECONDS`` is a hang, and a failure.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SECRET = "cancel-harness-secret"
PAD_SIZE = 16384
HANG_SECONDS = 60
OPS_PER_ROUND = 30

WORKER = r"""
import asyncio, hashlib, json, random, signal, sys
import anthill

url, seed, pad_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
store = anthill.open(url, pad_size=pad_size)  # the secret: $ANTHILL_SECRET
armed = False

def on_sigint(signum, frame):
    if armed:
        raise KeyboardInterrupt

signal.signal(signal.SIGINT, on_sigint)

def value(tag, size):
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]

def say(**fields):
    print(json.dumps(fields), flush=True)

def choose(i):
    keys = sorted(store.keys())
    roll = rng.random()
    if keys and roll < 0.15:
        return {"op": "remove", "key": rng.choice(keys)}
    if keys and roll < 0.27:
        return {"op": "rename", "key": rng.choice(keys), "to": rng.choice(keys + [f"r{seed}-{i}"])}
    if roll < 0.34:
        return {"op": "flush"}
    if roll < 0.38:
        return {"op": "compact"}
    key = rng.choice(keys) if keys and roll < 0.6 else f"k{seed}-{i}"
    size = rng.choice([0, 100, 500, 1000, 1000, 3000, 16384, 40000, 2 * 16384 + 17])
    return {"op": "put", "key": key, "tag": f"{seed}-{i}", "size": size}

def sync_call(op):
    if op["op"] == "put":
        store.store_item(op["key"], value(op["tag"], op["size"]), overwrite=True)
    elif op["op"] == "remove":
        store.remove_item(op["key"])
    elif op["op"] == "rename":
        store.rename_item(op["key"], op["to"], overwrite=True)
    elif op["op"] == "flush":
        store.flush()
    else:
        store.compact()

def async_call(op):
    if op["op"] == "put":
        return store.store_item_async(op["key"], value(op["tag"], op["size"]), overwrite=True)
    if op["op"] == "remove":
        return store.remove_item_async(op["key"])
    if op["op"] == "rename":
        return store.rename_item_async(op["key"], op["to"], overwrite=True)
    return store.flush_async()

async def cancelled_soon(op):
    try:
        await asyncio.wait_for(async_call(op), rng.uniform(0, 0.04))
        return "ok"
    except asyncio.TimeoutError:
        return "cancelled"

for i in range(int(sys.argv[4])):
    op = choose(i)
    # compact() has no async twin: it is stopped by Ctrl-C.
    op["mode"] = rng.choice(["sigint", "sigint", "async", "none"])
    if op["op"] == "compact" and op["mode"] == "async":
        op["mode"] = "sigint"
    say(begin=op)
    try:
        if op["mode"] == "async":
            outcome = asyncio.run(cancelled_soon(op))
        else:
            armed = True
            try:
                sync_call(op)
            finally:
                armed = False
            outcome = "ok"
    except KeyboardInterrupt:
        outcome = "cancelled"
    except anthill.KeyNotFoundError:
        outcome = "absent"  # removed or renamed away meanwhile: a no-op
    except anthill.UploadPendingError:
        outcome = "pending"  # an interrupted upload of the key: a no-op
    except anthill.AnthillError as error:
        outcome = f"error {type(error).__name__}: {error}"
    say(end=outcome)
say(finished=True)
store.close()
"""


def value(tag: str, size: int) -> bytes:
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]


@dataclass
class Report:
    rounds: int = 0
    async_cancels: int = 0
    interrupts: int = 0
    kills: int = 0
    operations_done: int = 0
    items_checked: int = 0
    writable_checks: int = 0
    hangs: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def cancellations(self) -> int:
        return self.async_cancels + self.interrupts + self.kills


class Expected:
    """What the store must hold: each key's possible values (``None``:
    absent). A key has one possible value unless an interrupted call left
    it between its old and its new one."""

    def __init__(self) -> None:
        self.values: dict[str, set[bytes | None]] = {}

    def possible(self, key: str) -> set[bytes | None]:
        return self.values.get(key, {None})

    def apply(self, op: dict, done: bool) -> None:
        """Notes `op`: `done` if it returned, else it may or may not have
        taken effect."""
        kind, key = op["op"], op.get("key")
        if kind in ("flush", "compact"):
            return
        if kind == "put":
            after = {key: {value(op["tag"], op["size"])}}
        elif kind == "remove":
            after = {key: {None}}
        else:
            to = op["to"]
            if to == key:
                return
            after = {key: {None}, to: self.possible(key)}
        for name, values in after.items():
            self.values[name] = values if done else self.possible(name) | values

    def settle(self, key: str, found: bytes | None) -> None:
        self.values[key] = {found}


def run(cancellations: int, seed: int, folder: Path | None = None) -> Report:
    rng = random.Random(seed)
    report = Report()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or Path(tmp) / "store")
        url = f"sim+file://{path}?latency_ms=3&jitter_ms=4"
        expected = Expected()
        while report.cancellations < cancellations and not report.failures:
            one_round(url, seed * 100_000 + report.rounds, rng, expected, report)
            report.rounds += 1
            if not report.failures:
                try:
                    check(url, expected, report)
                except AssertionError as failure:
                    report.failures.append(f"round {report.rounds}: {failure}")
    return report


def one_round(url: str, seed: int, rng: random.Random, expected: Expected, report: Report) -> None:
    """One worker's life: interrupted now and then, killed at a random
    operation (or left to finish)."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(seed), str(PAD_SIZE), str(OPS_PER_ROUND)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "ANTHILL_SECRET": SECRET},
    )
    assert worker.stdout is not None
    lines = Lines(worker.stdout)
    kill_at = rng.randrange(OPS_PER_ROUND + 5)  # some rounds run to the end
    begun = 0
    in_flight: dict | None = None
    while True:
        line = lines.next(HANG_SECONDS)
        if line is None:
            hung = worker.poll() is None
            report.hangs += hung
            worker.kill()
            worker.wait()
            if hung or in_flight is not None:
                what = json.dumps(in_flight) if in_flight else "between operations"
                report.failures.append(f"worker {seed} hung or died ({what})")
            return
        event = json.loads(line)
        if "begin" in event:
            in_flight = event["begin"]
            begun += 1
            if begun > kill_at:
                time.sleep(rng.uniform(0, 0.03))
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                report.kills += 1
                settle_after_kill(lines, in_flight, expected, report)
                return
            if in_flight["mode"] == "sigint":
                time.sleep(rng.uniform(0, 0.03))
                worker.send_signal(signal.SIGINT)
        elif "end" in event:
            assert in_flight is not None
            outcome = event["end"]
            if outcome.startswith("error"):
                report.failures.append(f"worker {seed}: {json.dumps(in_flight)}: {outcome}")
            if outcome == "pending":
                # Refused, as a crash's interrupted upload makes it: a no-op.
                in_flight = None
                continue
            done = outcome in ("ok", "absent")
            report.operations_done += done
            if outcome == "cancelled":
                report.async_cancels += in_flight["mode"] == "async"
                report.interrupts += in_flight["mode"] == "sigint"
            expected.apply(in_flight, done)
            in_flight = None
        elif "finished" in event:
            worker.wait(HANG_SECONDS)
            return


def settle_after_kill(lines: Lines, in_flight: dict, expected: Expected, report: Report) -> None:
    """The worker ran on until the signal landed: what it printed meanwhile
    happened too; the call under way then may or may not have."""
    for line in lines.rest():
        event = json.loads(line)
        if "end" in event:
            done = event["end"] in ("ok", "absent")
            report.operations_done += done
            if event["end"] != "pending":
                expected.apply(in_flight, done)
            in_flight = None
        elif "begin" in event:
            in_flight = event["begin"]
    if in_flight is not None:
        expected.apply(in_flight, False)


class Lines:
    """A worker's output lines, each waited for at most a bound (a hang is a
    failure, never a stuck run)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.queue: list[str | None] = []
        self.ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            with self.ready:
                self.queue.append(line if line.endswith("\n") else None)
                self.ready.notify()
        with self.ready:
            self.queue.append(None)
            self.ready.notify()

    def next(self, timeout: float) -> str | None:
        with self.ready:
            if not self.ready.wait_for(lambda: self.queue, timeout):
                return None
            return self.queue.pop(0)

    def rest(self) -> list[str]:
        lines = []
        while (line := self.next(HANG_SECONDS)) is not None:
            lines.append(line)
        return lines


def check(url: str, expected: Expected, report: Report) -> None:
    """Opens the store in this (fresh) process: every key holds one of its
    possible values, no other key exists, nothing is damaged, and it takes
    writes. Settles each key to what it holds."""
    import anthill

    store = anthill.open(url, secret=SECRET, pad_size=PAD_SIZE)
    try:
        keys = set(store.keys())
        for key in sorted(keys | set(expected.values)):
            possible = expected.possible(key)
            if len(possible) > 1:
                finish_interrupted_upload(store, key, possible)
            try:
                found: bytes | None = store.fetch_item(key)
            except anthill.KeyNotFoundError:
                found = None
            assert found in possible, (
                f"{key}: holds {'nothing' if found is None else f'{len(found)} bytes'}, "
                f"expected one of {sorted(len(v) if v is not None else -1 for v in possible)}"
            )
            report.items_checked += found is not None
            expected.settle(key, found)
        assert store.summary().pending == 0, "an interrupted upload is left pending"
        verified = store.verify(deep=True)
        assert verified.ok, f"verify found damage: {verified}"
        store.store_item("probe", b"p" * 3000, overwrite=True)
        assert store.fetch_item("probe") == b"p" * 3000
        store.remove_item("probe")
        report.writable_checks += 1
    finally:
        store.close()


def finish_interrupted_upload(store, key: str, possible: set[bytes | None]) -> None:
    """A large item's upload interrupted by a kill leaves its key pending:
    finishing it (``resume=True``, same data) is what a user does."""
    import anthill

    for candidate in possible - {None}:
        try:
            store.store_item(key, candidate, resume=True)
            return
        except anthill.InvalidInputError:
            continue  # no upload of this key, or not of this data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancellations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run(args.cancellations, args.seed)
    summary = {**report.__dict__, "cancellations": report.cancellations}
    print(json.dumps(summary, indent=2))
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
