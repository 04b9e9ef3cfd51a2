"""Power-loss harness: writer processes work on a folder store inside a
FUSE file system that forgets everything not yet synced (``powerfs.py``);
the power is cut at seeded random instants, and after each cut the store is
reopened and checked against what the writers were told.

    python tests_py/power_harness.py --cuts 300 --fsync true --seed 1

prints a JSON summary (``scripts/reliability.sh`` puts it in
docs/reliability.md); ``test_power_loss.py`` runs a bounded version in CI.

One cycle: mount, check the store (a checker process), arm the cut at a
seeded random changing request, start the writers, and when the power is
cut SIGKILL them and unmount (the backing folder then holds only what was
synced). Every ``FRESH_EVERY`` cycles the machine starts over empty, so cuts
also land while a store and its key file are being created.

The store, the key file (``$XDG_CONFIG_HOME``) and this machine's memory of
the store's log (``$XDG_STATE_HOME``) all live inside the mount: the whole
machine loses power. Writers report each operation before they start it and
after it returned on their standard output, a pipe outside the mount, so
the harness knows exactly which operations returned before the cut (after
the cut every request fails, so an operation that returned did all its I/O
before it).

Checks after each cut, with ``fsync=true``: the store opens; every item
whose ``store_item`` returned is there with its exact bytes, every removed
item is absent, an interrupted operation left its key old, new, absent or
pending (resumed); the store knows at least as many pads as any writer saw
and every pad file. With ``fsync=false`` nothing is promised but "never
wrong data": the store opens (else the error is recorded), a fetch returns
bytes some put stored under that key or fails with ``IntegrityError``, and
every difference from the fsync=true promise is counted by kind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAD_SIZE = 16384
WRITERS = 2
FRESH_EVERY = 25
# Cut at a changing request drawn from 1..MAX_CUT_AT after the writers
# start (an operation makes about 30 such requests).
MAX_CUT_AT = 1500
# Long keys make each index record large, so a checkpoint (which comes when
# the log outgrows 1 MiB) comes every few hundred operations.
KEY_PAD = "k" * 4000
KEYS_PER_WRITER = 12
# Below PAD_SIZE an item is committed in the index log first.
SIZES = [0, 1, 100, 700, 3000, PAD_SIZE, 3 * PAD_SIZE + 17, 9 * PAD_SIZE]

WRITER = r"""
import hashlib, json, random, sys
import anthill

url, seed, writer, keys_per_writer, key_pad = sys.argv[1:6]
seed, writer = int(seed), int(writer)
sizes = json.loads(sys.argv[6])
rng = random.Random(seed)

def value(tag, size):
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]

def report(**event):
    print(json.dumps(event), flush=True)

def after_each_operation(store):
    # Small items are committed in the log and their pads written back
    # later: now and then that write-back runs here, so cuts land in it too.
    if rng.random() < 0.1:
        store.flush()

store = anthill.open(url, pad_size=int(sys.argv[7]))
report(op="opened")
names = [f"w{writer}-{j}" for j in range(int(keys_per_writer))]
for i in range(100_000):
    name = rng.choice(names)
    key = f"{name}-{key_pad}"
    if rng.random() < 0.2:
        report(op="remove", key=name)
        try:
            store.remove_item(key)
        except anthill.KeyNotFoundError:
            pass
    else:
        tag, size = f"{seed}-{i}", rng.choice(sizes)
        report(op="put", key=name, tag=tag, size=size)
        store.store_item(key, value(tag, size), overwrite=True)
    after_each_operation(store)
    report(op="done", pads=store.summary().total_pads)
"""

# Opens the store, fetches every item, resumes the pending puts it is told
# of, and with `repair` removes items that fail their integrity check; then
# prints what it found as one JSON line.
CHECKER = r"""
import hashlib, json, os, re, sys
import anthill

job = json.loads(sys.stdin.read())
out = {"open_error": None, "rollback": False, "items": {}, "resumed": [], "removed": [],
       "resume_errors": [], "log_objects_deleted": []}

def value(tag, size):
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]

def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]

# The recovery the README documents for a store whose newest index log
# objects were lost or torn: delete the torn log objects (and any after a
# gap), then open with allow_rollback=True.
BAD_LOG = re.compile(r"index (?:log )?object j/([0-9a-f]{16}) is (truncated|missing)")

def open_store():
    allow_rollback = False
    for _ in range(10):
        try:
            return anthill.open(job["url"], pad_size=job["pad_size"], allow_rollback=allow_rollback)
        except anthill.IntegrityError as error:
            if not job["repair"]:
                raise
            text = str(error)
            bad = BAD_LOG.search(text)
            if "rollback detected" in text:
                out["rollback"] = text[:300]
            elif bad:
                first = int(bad.group(1), 16)
                log = os.path.join(job["path"], "j")
                for name in os.listdir(log):
                    if "#" not in name and int(name, 16) >= first:
                        os.unlink(os.path.join(log, name))
                        out["log_objects_deleted"].append(f"{name} ({bad.group(2)})")
            else:
                raise
            allow_rollback = True
    raise RuntimeError("the documented recovery did not open the store")

try:
    store = open_store()
except Exception as error:
    out["open_error"] = f"{type(error).__name__}: {error}"[:500]
    print(json.dumps(out))
    sys.exit(0)

def fetch(key):
    try:
        return "ok:" + digest(store.fetch_item(key))
    except anthill.KeyNotFoundError:
        return "absent"
    except anthill.AnthillError as error:
        return f"{type(error).__name__}: {error}"[:300]

suffix = "-" + job["key_pad"]

def full(name):
    return name + suffix

for key in store.keys():
    out["items"][key.removesuffix(suffix)] = fetch(key)
for name, (tag, size) in job["resume"].items():
    if not store.summary().pending:
        break
    try:
        store.store_item(full(name), value(tag, size), resume=True)
    except anthill.InvalidInputError:
        continue  # this key has no interrupted upload
    except anthill.AnthillError as error:
        out["resume_errors"].append(f"{name}: {type(error).__name__}: {error}"[:300])
        continue
    out["items"][name] = "ok:" + digest(value(tag, size))
    out["resumed"].append(name)
if job["repair"]:
    for name, found in list(out["items"].items()):
        if not found.startswith("ok:"):
            store.remove_item(full(name))
            out["removed"].append(name)
            del out["items"][name]
summary = store.summary()
out["summary"] = {
    "pads": summary.total_pads, "items": summary.items, "pending": summary.pending,
    "used": summary.used_space, "free": summary.free_space, "total": summary.total_space,
}
pad_folder = os.path.join(job["path"], "p")
out["pad_files"] = {
    name: os.path.getsize(os.path.join(pad_folder, name))
    for name in (os.listdir(pad_folder) if os.path.isdir(pad_folder) else [])
}
store.close()
print(json.dumps(out))
"""


def value(tag: str, size: int) -> bytes:
    block = hashlib.sha256(tag.encode()).digest()
    return (block * (size // 32 + 1))[:size]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Report:
    fsync: bool
    seed: int
    cuts: int = 0
    cuts_mid_operation: int = 0
    operations_done: int = 0
    items_checked: int = 0
    pending_resumed: int = 0
    checkpoints_seen: int = 0
    fresh_starts: int = 0
    # What a cut lost, by kind (with fsync=true each is a failure).
    lost: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)


class Mount:
    """One mount of powerfs over `backing`."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "powerfs.py"), str(backing), str(mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.read, daemon=True).start()
        assert self.readline(30) == "ready", "powerfs did not mount"

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # the end

    def readline(self, timeout: float) -> str | None:
        """The next line powerfs printed ("" once it exited), or None after `timeout`."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def unmount(self) -> dict[str, int]:
        """Cuts the power (if not yet), unmounts, and returns the counters."""
        self.send("exit")
        counters: dict[str, int] = {}
        while line := self.readline(60):
            if line.startswith("{"):
                counters = json.loads(line)
                break
        self.process.wait(timeout=60)
        return counters


class Machine:
    """The simulated machine: its disk (the backing folder), the mount,
    and what the writers were told."""

    def __init__(self, root: Path, fsync: bool, report: Report) -> None:
        self.root = root
        self.backing = root / "disk"
        self.mountpoint = root / "mnt"
        self.mountpoint.mkdir()
        self.fsync = fsync
        self.report = report
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.mountpoint / "config"),
            "XDG_STATE_HOME": str(self.mountpoint / "state"),
            "XDG_DATA_HOME": str(self.mountpoint / "data"),
        }
        self.env.pop("ANTHILL_SECRET", None)
        self.path = self.mountpoint / "store"
        self.url = f"file://{self.path}?fsync={'true' if fsync else 'false'}"
        self.fresh()

    def fresh(self) -> None:
        if self.backing.exists():
            shutil.rmtree(self.backing)
        self.backing.mkdir()
        # Every value each key ever had, by digest; what each key holds now.
        self.history: dict[str, dict[str, tuple[str, int]]] = {}
        self.expected: dict[str, bytes] = {}
        self.max_pads = 0
        self.store_exists = False
        self.checkpoints: set[str] = set()
        self.empty_pads: set[str] = set()
        # What each key held at the last check (on disk since, without fsync).
        self.settled: dict[str, str] = {}

    def cycle(self, number: int, rng: random.Random) -> None:
        if number % FRESH_EVERY == 0:
            self.fresh()
            self.report.fresh_starts += 1
        mount = Mount(self.backing, self.mountpoint)
        writers: list[subprocess.Popen[str]] = []
        reports = [self.root / f"writer-{w}.jsonl" for w in range(WRITERS)]
        try:
            cut_at = rng.randint(1, MAX_CUT_AT)
            # Every other cut keeps a random half of the unsynced changes.
            keep = 0.5 if number % 2 else 0.0
            mount.send(f"arm {cut_at} {keep} {rng.randrange(1 << 30)}")
            for writer in range(WRITERS):
                with reports[writer].open("w") as report_file:
                    writers.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-c",
                                WRITER,
                                self.url,
                                str(rng.randrange(1 << 30)),
                                str(writer),
                                str(KEYS_PER_WRITER),
                                KEY_PAD,
                                json.dumps(SIZES),
                                str(PAD_SIZE),
                            ],
                            # A file outside the mount: what the writer was told
                            # survives its kill (and the cut) whole.
                            stdout=report_file,
                            stderr=subprocess.DEVNULL,
                            text=True,
                            env=self.env,
                        )
                    )
            # Until the cut (or until every writer stopped on its own).
            while mount.readline(1) != "cut":
                if all(w.poll() is not None for w in writers):
                    mount.send("cut")
            for writer in writers:
                writer.send_signal(signal.SIGKILL)
            in_flight: dict[str, dict[str, Any]] = {}
            for writer, report in zip(writers, reports):
                writer.wait()
                self.follow(report, in_flight)
            counters = mount.unmount()
        finally:
            for writer in writers:
                if writer.poll() is None:
                    writer.kill()
                    writer.wait()
            if mount.process.poll() is None:
                mount.unmount()
        self.report.cuts += 1
        self.report.cuts_mid_operation += bool(in_flight)
        del counters
        self.check(number, in_flight)

    def follow(self, report: Path, in_flight: dict[str, dict[str, Any]]) -> None:
        """Applies what a (killed) writer reported: each returned operation."""
        current: dict[str, Any] | None = None
        for line in report.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # cut short by the kill
            event = json.loads(line)
            if event["op"] == "opened":
                self.store_exists = True
            elif event["op"] == "done":
                assert current is not None
                self.apply(current)
                self.max_pads = max(self.max_pads, event["pads"])
                self.report.operations_done += 1
                current = None
            else:
                current = event
                if event["op"] == "put":
                    data = value(event["tag"], event["size"])
                    self.history.setdefault(event["key"], {})[digest(data)] = (
                        event["tag"],
                        event["size"],
                    )
        if current is not None:
            in_flight[current["key"]] = current

    def apply(self, event: dict[str, Any]) -> None:
        if event["op"] == "remove":
            self.expected.pop(event["key"], None)
        else:
            self.expected[event["key"]] = value(event["tag"], event["size"])

    def check(self, number: int, in_flight: dict[str, dict[str, Any]]) -> None:
        mount = Mount(self.backing, self.mountpoint)
        try:
            job = {
                "url": self.url,
                "path": str(self.path),
                "pad_size": PAD_SIZE,
                "repair": not self.fsync,
                "key_pad": KEY_PAD,
                "resume": {
                    key: [e["tag"], e["size"]] for key, e in in_flight.items() if e["op"] == "put"
                },
            }
            result = subprocess.run(
                [sys.executable, "-c", CHECKER],
                input=json.dumps(job),
                check=False,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=600,
            )
            self.note_checkpoints()
            if not self.fsync:
                # Without fsync nothing is durable until the OS writes it out:
                # the machine now sits idle long enough for that, so the next
                # cut loses only what the next cycle writes.
                mount.send("sync")
        finally:
            mount.unmount()
        if result.returncode != 0:
            self.fail(number, f"checker failed: {result.stderr[-2000:]}")
            return
        found = json.loads(result.stdout)
        self.judge(number, found, in_flight)

    def note_checkpoints(self) -> None:
        """Counts the checkpoints the store holds that were not seen before."""
        folder = self.path / "c"
        names = {n for n in os.listdir(folder) if "#" not in n} if folder.is_dir() else set()
        self.report.checkpoints_seen += len(names - self.checkpoints)
        self.checkpoints |= names

    def fail(self, number: int, message: str) -> None:
        self.report.failures.append(f"cut {number}: {message}")

    def lose(self, number: int, kind: str, detail: str) -> None:
        """Something the fsync=true promise does not allow."""
        self.report.lost[kind] += 1
        self.report.examples.setdefault(kind, f"cut {number}: {detail}")
        if self.fsync:
            self.fail(number, f"{kind}: {detail}")

    def judge(
        self, number: int, found: dict[str, Any], in_flight: dict[str, dict[str, Any]]
    ) -> None:
        if found["open_error"]:
            if not self.store_exists:
                # Cut while the store was being created by a writer that never
                # reported it open: a store that is not there may not open.
                self.lose(number, "store being created does not open", found["open_error"])
            else:
                self.lose(number, "store does not open", found["open_error"])
            self.fresh()
            return
        if found["rollback"]:
            self.lose(number, "rollback reported on open", found["rollback"])
        for name in found["log_objects_deleted"]:
            self.lose(number, "torn or orphaned log object deleted to open", name)
        items: dict[str, str] = found["items"]
        for key in found["removed"]:
            want = self.expected.get(key)
            before = want is not None and self.settled.get(key) == digest(want)
            when = "stored before" if before else "changed since"
            self.lose(number, f"item {when} the last write-out fails its integrity check", key)
        self.report.pending_resumed += len(found["resumed"])
        for key, state in items.items():
            if not state.startswith("ok:"):
                self.lose(number, "item fails to read", f"{key}: {state}")
            elif state[3:] not in self.history.get(key, {}):
                self.fail(number, f"{key} holds bytes no put stored under it")
        for key in set(self.expected) | set(items) | set(in_flight):
            want = self.expected.get(key)
            have = items.get(key, "absent")
            event = in_flight.get(key)
            allowed = {"absent" if want is None else "ok:" + digest(want)}
            if event is not None:
                if event["op"] == "put":
                    allowed |= {"absent", "ok:" + digest(value(event["tag"], event["size"]))}
                else:
                    allowed.add("absent")
            if have in allowed:
                self.report.items_checked += key in self.expected
            elif want is None and have.startswith("ok:"):
                self.lose(number, "removed item is back", key)
            elif have == "absent" or not have.startswith("ok:"):
                # Lost although written before the machine last sat idle (and
                # so wrote everything out), or since.
                before = want is not None and self.settled.get(key) == digest(want)
                self.lose(
                    number,
                    "item stored before the last write-out lost" if before else "stored item lost",
                    key,
                )
            else:
                self.lose(number, "stored item has an older value", key)
        # From here on the store holds what was found.
        self.expected = {}
        for key, state in items.items():
            if state.startswith("ok:") and state[3:] in self.history.get(key, {}):
                self.expected[key] = value(*self.history[key][state[3:]])
        self.settled = {key: digest(data) for key, data in self.expected.items()}
        summary = found["summary"]
        files = {name: size for name, size in found["pad_files"].items() if "#" not in name}
        pads = [name for name, size in files.items() if size]
        # A pad whose name reached the disk but not its content is an empty
        # file: not authentic, so left alone rather than adopted.
        for name in set(files) - set(pads) - self.empty_pads:
            self.lose(number, "empty pad file left alone", name)
            self.empty_pads.add(name)
        if summary["pads"] < self.max_pads:
            self.lose(number, "reserved pads forgotten", f"{summary['pads']} < {self.max_pads}")
        if len(pads) > summary["pads"]:
            self.lose(number, "pad files not in the map", f"{len(pads)} > {summary['pads']}")
        if summary["pending"]:
            self.lose(
                number, "pending upload left", f"{summary['pending']} {found['resume_errors']}"
            )
        if summary["used"] + summary["free"] != summary["total"]:
            self.fail(number, f"summary does not add up: {summary}")
        self.max_pads = summary["pads"]


def run(cuts: int, fsync: bool, seed: int) -> Report:
    rng = random.Random(seed)
    report = Report(fsync=fsync, seed=seed)
    with tempfile.TemporaryDirectory(prefix="anthill-power-") as tmp:
        machine = Machine(Path(tmp), fsync, report)
        for number in range(cuts):
            machine.cycle(number, rng)
            if report.failures:
                break
    return report


# What each count of `Report.lost` counts, for the docs.
LOSS_UNITS = {
    "stored item lost": "items stored since the machine last wrote everything out "
    "absent or unreadable",
    "item stored before the last write-out lost": "items absent or unreadable although "
    "written out before the cycle (a later put rewrote their pad)",
    "item stored before the last write-out fails its integrity check": "items written "
    "out before the cycle listed but failing with IntegrityError (also counted as unreadable)",
    "item changed since the last write-out fails its integrity check": "items changed "
    "since the last write-out listed but failing with IntegrityError (also counted as "
    "unreadable)",
    "stored item has an older value": "items back to an older value",
    "removed item is back": "removed items back",
    "rollback reported on open": "opens refused as a rollback (then opened with "
    "allow_rollback=True)",
    "torn or orphaned log object deleted to open": "torn or orphaned index log objects "
    "deleted to open (the documented recovery)",
    "pending upload left": "checks finding a pending upload left by a put that returned",
    "empty pad file left alone": "empty pad files left alone (name on disk, content not)",
    "reserved pads forgotten": "checks finding fewer pads recorded than a writer had seen "
    "(pads without a file, free on a folder)",
}


def power_rows(run: dict[str, Any]) -> str:
    """The docs/reliability.md row of one run's summary (as `main` prints it)."""
    fsync = "true" if run["fsync"] else "false"
    lost = run["lost"]
    if lost:
        losses = "; lost: " + ", ".join(
            f"{count} {LOSS_UNITS.get(kind, kind)}" for kind, count in sorted(lost.items())
        )
    else:
        losses = "; nothing lost"
    return (
        f"| R8 power loss, `fsync={fsync}` (`tests_py/power_harness.py` on `tests_py/powerfs.py`) "
        f"| {run['cuts']} power cuts ({run['cuts_mid_operation']} inside an operation; every "
        "other one keeping a random half of the unsynced changes) under 2 writer processes, "
        f"after {run['operations_done']} returned operations; {run['items_checked']} item "
        f"checks after remounting; {run['pending_resumed']} pending uploads resumed; "
        f"{run['checkpoints_seen']} checkpoints; {run['fresh_starts']} new stores"
        f"{losses} | {len(run['failures'])} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=300)
    parser.add_argument("--fsync", choices=["true", "false"], default="true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--row", type=Path, help="print the docs/reliability.md row of a saved summary"
    )
    args = parser.parse_args()
    if args.row:
        print(power_rows(json.loads(args.row.read_text())))
        return
    started = time.monotonic()
    report = run(args.cuts, args.fsync == "true", args.seed)
    out = {**report.__dict__, "lost": dict(report.lost)}
    out["seconds"] = round(time.monotonic() - started)
    print(json.dumps(out, indent=2))
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
