"""Linearizability harness (R9): 4 writer processes put, overwrite, remove,
rename and get a small shared set of keys on one store while a driver
SIGKILLs them at random instants and starts them again; every call's
invocation and completion is recorded, and the history is checked against
the sequential model of the store by ``linearizability.py``. After the run a
fresh process reads every key (those reads are part of the history: nothing
acknowledged may be lost), discards interrupted uploads, and checks
``verify(deep=True)``, the summary and (on a folder) that no pad is
forgotten.

CI runs a bounded version through ``test_linearizability.py``; the long run is

    python tests_py/lin_harness.py --kills 200 --seed 1            # a folder
    python tests_py/lin_harness.py --kills 200 --seed 1 --s3       # Garage

(``--s3`` needs ``ANTHILL_TEST_S3_URL`` and the AWS variables that
``eval "$(scripts/garage.sh start 3)"`` exports), which prints a summary;
``scripts/reliability.sh --r9`` runs both.

Recording: each writer appends one JSON line per event to its own file,
flushed as it is written (a SIGKILL loses no line the kernel has; a line
cut short by the kill is dropped): ``{"i": n, "t": ns, "call": {...}}``
right before a call, ``{"i": n, "t": ns, "outcome": ..., "value": ...}``
right after. Times are ``time.monotonic_ns()``, one clock for every process
on Linux. Each put writes a value of its own, whose first bytes name it (the
writer, its life and the call), so a get says which put it saw; its
remaining bytes are derived from the name and checked.

Keys: two groups of three (``a0 a1 a2``, ``b0 b1 b2``); renames stay inside
a group, so the checker handles each group on its own. Gets are mostly
preceded by ``store.refresh()`` (on a store without it, ``len(store)``,
which catches up with other writers): those must be linearizable. Some are
not ("plain" gets, ``fresh: false`` in the record): a plain read may lag by
design, and the checker is told how far (``--stale-read-ms``).

Planted faults (``ANTHILL_LIN_FAULT``, read by the writers), to show the
checker catches them: ``stale-cache`` answers gets from a cache of what the
process last read or wrote to the key, never refreshed; ``second-handle``
reads through a second handle of the store on ``sim+`` that is never
refreshed (reads there, as on S3, may lag a second behind other writers; on
a folder a read catches up by itself);
``lost-write`` acknowledges every tenth put without storing it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from linearizability import KILLED, PENDING, Op, check

SECRET = "lin-harness-secret"
PAD_SIZE = 16384
WRITERS = 4
GROUPS = (("a0", "a1", "a2"), ("b0", "b1", "b2"))
KEYS = [key for group in GROUPS for key in group]

WRITER = r"""
import hashlib, json, os, random, signal, sys, time
import anthill

url, log_path, name, seed = sys.argv[1:5]
pad_size = int(sys.argv[5])
groups = json.loads(sys.argv[6])
read_share = float(sys.argv[7])
fault = os.environ.get("ANTHILL_LIN_FAULT", "")
rng = random.Random(int(seed))
stopping = False

def stop(signum, frame):
    global stopping
    stopping = True

signal.signal(signal.SIGTERM, stop)
log = open(log_path, "a", buffering=1)

def record(**fields):
    log.write(json.dumps(fields) + "\n")  # line-buffered: written at once

def value(tag, size):
    head = (tag + "|").encode()
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + body)[: max(size, len(head))]

def tag_of(data):
    tag = data.split(b"|", 1)[0].decode()
    return tag if value(tag, len(data)) == data else "corrupt:" + data[:40].hex()

store = anthill.open(url, pad_size=pad_size)  # the secret: $ANTHILL_SECRET
refresh = getattr(store, "refresh", None) or (lambda: len(store))
# The planted fault "second-handle": gets read through another handle, on
# `sim+` (whose reads, as on S3, may lag a second behind other writers),
# which is never refreshed.
sim_url = url if url.startswith("sim+") else "sim+" + url
reader = anthill.open(sim_url, pad_size=pad_size) if fault == "second-handle" else store
cache = {}
print("ready", flush=True)
n = 0
while not stopping:
    group = rng.choice(groups)
    key = rng.choice(group)
    roll = rng.random()
    roll = (roll - read_share) / (1 - read_share) * 0.65 + 0.35 if roll >= read_share else 0
    if roll < 0.35:
        call = {"op": "get", "key": key, "fresh": rng.random() < 0.8}
    elif roll < 0.7:
        size = rng.choice([10, 200, 1000, 1000, 3000, pad_size, 2 * pad_size + 100])
        call = {"op": "put", "key": key, "tag": f"{name}.{n}", "size": size}
    elif roll < 0.82:
        call = {"op": "remove", "key": key}
    else:
        to = rng.choice([k for k in group if k != key])
        call = {"op": "rename", "key": key, "to": to, "overwrite": rng.random() < 0.5}
    record(i=n, t=time.monotonic_ns(), call=call)
    result = None
    try:
        if call["op"] == "get":
            if fault == "stale-cache" and key in cache:
                result = cache[key]
            else:
                if call["fresh"] and reader is store:
                    refresh()
                result = tag_of(reader.fetch_item(key))
                cache[key] = result
        elif call["op"] == "put":
            if not (fault == "lost-write" and n % 10 == 9):
                store.store_item(key, value(call["tag"], call["size"]), overwrite=True)
            cache[key] = call["tag"]
        elif call["op"] == "remove":
            store.remove_item(key)
        else:
            store.rename_item(key, call["to"], overwrite=call["overwrite"])
        outcome = "ok"
    except anthill.KeyNotFoundError:
        outcome = "absent"
    except anthill.KeyExistsError:
        outcome = "exists"
    except anthill.UploadPendingError:
        outcome = "pending"
    except anthill.AnthillError as error:
        outcome = f"error {type(error).__name__}: {error}"
    record(i=n, t=time.monotonic_ns(), outcome=outcome, value=result)
    n += 1
store.close()
if reader is not store:
    reader.close()
record(closed=True, t=time.monotonic_ns())
"""

# A fresh process after the run: reads every key (recorded like a writer's
# calls), then settles interrupted uploads and reports on the store.
FINAL = r"""
import hashlib, json, sys, time
import anthill

url, log_path, pad_size = sys.argv[1:4]
keys = json.loads(sys.argv[4])
log = open(log_path, "a", buffering=1)

def value(tag, size):
    head = (tag + "|").encode()
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return (head + body)[: max(size, len(head))]

def tag_of(data):
    tag = data.split(b"|", 1)[0].decode()
    return tag if value(tag, len(data)) == data else "corrupt:" + data[:40].hex()

store = anthill.open(url, pad_size=int(pad_size))
sizes = {}
for n, key in enumerate(keys):
    log.write(json.dumps({"i": n, "t": time.monotonic_ns(), "call": {"op": "get", "key": key, "fresh": True}}) + "\n")
    try:
        data = store.fetch_item(key)
        outcome, result = "ok", tag_of(data)
        sizes[key] = len(data)
    except anthill.KeyNotFoundError:
        outcome, result = "absent", None
    log.write(json.dumps({"i": n, "t": time.monotonic_ns(), "outcome": outcome, "value": result}) + "\n")
listed = sorted(store.keys())
pending = [key for key, _ in store._pending_items()]  # no public name yet
# Interrupted uploads are discarded, as a user would (remove_item), and
# recorded as calls too.
for n, key in enumerate(pending, start=len(keys)):
    log.write(json.dumps({"i": n, "t": time.monotonic_ns(), "call": {"op": "remove", "key": key}}) + "\n")
    store.remove_item(key)
    log.write(json.dumps({"i": n, "t": time.monotonic_ns(), "outcome": "ok", "value": None}) + "\n")
    sizes.pop(key, None)
verified = store.verify(deep=True)
summary = store.summary()
store.store_item("probe", b"p" * 3000)
assert store.fetch_item("probe") == b"p" * 3000
store.remove_item("probe")
store.close()
print(json.dumps({
    "listed": listed, "read": sorted(sizes), "pending": pending,
    "verify_ok": verified.ok, "damaged": list(verified.damaged), "missing_pads": verified.missing_pads,
    "items": summary.items, "pending_after": summary.pending, "used": summary.used_space,
    "free": summary.free_space, "total": summary.total_space, "pads": summary.total_pads,
    "item_bytes": sum(sizes.values()),
}))
"""


@dataclass
class Report:
    backend: str = "folder"
    kills: int = 0
    kills_mid_call: int = 0
    lives: int = 0
    calls_completed: int = 0
    calls_killed: int = 0
    puts: int = 0
    removes: int = 0
    renames: int = 0
    gets_fresh: int = 0
    gets_plain: int = 0
    refused_pending: int = 0
    errors: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    plain_read_anomalies: list[str] = field(default_factory=list)
    # The least lag (of 1, 2, 5, ... 50 ms) that explains every plain get.
    plain_read_lag_ms: float | None = None
    final: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def read_history(
    paths: list[Path], deadlines: dict[str, int | None], error_grace_ns: int | None = 0
) -> tuple[list[Op], list[str], int]:
    """The calls in the writers' logs (a line cut short by a kill is
    dropped), the errors among them, and how many logs end inside a call.
    A call a kill cut short may take effect until its process's deadline
    (``None``: at any later instant); a call that failed with an error, until
    `error_grace_ns` after it returned."""
    ops: list[Op] = []
    errors: list[str] = []
    mid_call = 0
    for path in paths:
        process = path.stem
        open_call: dict | None = None
        text = path.read_text()
        lines = text.split("\n")[:-1]  # the last piece lacks its newline
        for line in lines:
            event = json.loads(line)
            if "call" in event:
                open_call = event
            elif "outcome" in event:
                assert open_call is not None and open_call["i"] == event["i"], (path, line)
                op = make_op(len(ops), process, open_call, event)
                if op.outcome.startswith("error"):
                    errors.append(f"{op.describe()}: {op.outcome}")
                    end = op.end or 0
                    op.outcome, op.end = KILLED, None  # its effect is unknown
                    op.deadline = None if error_grace_ns is None else end + error_grace_ns
                ops.append(op)
                open_call = None
        if open_call is not None:
            mid_call += 1
            op = make_op(len(ops), process, open_call, None)
            op.deadline = deadlines.get(process)
            ops.append(op)
    return ops, errors, mid_call


def make_op(op_id: int, process: str, begin: dict, end: dict | None) -> Op:
    call = begin["call"]
    outcome = end["outcome"] if end else KILLED
    if call["op"] == "put":
        value = call["tag"]
    else:
        value = end.get("value") if end else None
    return Op(
        id=op_id,
        process=process,
        kind=call["op"],
        key=call["key"],
        start=begin["t"],
        end=end["t"] if end else None,
        outcome=outcome,
        value=value,
        to=call.get("to"),
        overwrite=call.get("overwrite", True),
        large=call.get("size", 0) > PAD_SIZE,
        fresh=call.get("fresh", True),
    )


def run(
    kills: int,
    seed: int,
    url: str | None = None,
    fault: str = "",
    stale_read_ms: float = 0,
    grace_ms: float | None = None,
    read_share: float = 0.35,
    measure_lag: bool = False,
    keep: Path | None = None,
    life_s: tuple[float, float] | None = None,
) -> Report:
    """`kills` SIGKILLs among 4 writers on the store at `url` (default: a
    new folder), then the final reads and checks. A call cut short by a
    kill may take effect until `grace_ms` after the driver saw its process
    die (``None``: 0 on a folder, 5 s on S3; ``inf``: at any later instant),
    or never. A writer is killed a random `life_s` seconds after it opened
    the store (``None``: 0.05 to 0.6 on a folder; 1 to 5 on S3, where a
    killed lease holder's lease passes on only 5 s after its death, so
    shorter lives would leave the others mostly waiting for it). The
    writers' logs go to `keep` if given (with the killed calls' deadlines,
    ``deadlines.json``), else to a temporary folder."""
    rng = random.Random(seed)
    report = Report(backend="s3" if url and url.startswith("s3") else "folder")
    if life_s is None:
        life_s = (1.0, 5.0) if report.backend == "s3" else (0.05, 0.6)
    with tempfile.TemporaryDirectory() as tmp:
        logs = keep or Path(tmp) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        store_path = Path(tmp) / "store"
        url = url or str(store_path)
        env = {**os.environ, "ANTHILL_SECRET": SECRET, "ANTHILL_LIN_FAULT": fault}
        import anthill

        anthill.open(url, secret=SECRET, pad_size=PAD_SIZE).close()
        lives = [0] * WRITERS
        deaths: dict[str, int] = {}

        def start(slot: int) -> subprocess.Popen[str]:
            name = f"w{slot}.{lives[slot]}"
            report.lives += 1
            command = [
                sys.executable,
                "-c",
                WRITER,
                url,
                str(logs / f"{name}.jsonl"),
                name,
                str(rng.randrange(2**32)),
                str(PAD_SIZE),
                json.dumps(GROUPS),
                str(read_share),
            ]
            return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)

        writers = [start(slot) for slot in range(WRITERS)]
        try:
            for _ in range(kills):
                slot = rng.randrange(WRITERS)
                victim = writers[slot]
                assert victim.stdout is not None
                # Killed once it has opened the store: at a random instant
                # of its calls, not while it starts up.
                if victim.stdout.readline() != "ready\n":
                    victim.wait()
                    raise AssertionError(f"writer {slot} died before it was ready")
                time.sleep(rng.uniform(*life_s))
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                deaths[f"w{slot}.{lives[slot]}"] = time.monotonic_ns()
                victim.stdout.close()
                report.kills += 1
                lives[slot] += 1
                writers[slot] = start(slot)
        finally:
            for writer in writers:
                if writer.poll() is None:
                    writer.send_signal(signal.SIGTERM)
            for writer in writers:
                writer.communicate(timeout=300)
        for slot in range(WRITERS):
            deaths.setdefault(f"w{slot}.{lives[slot]}", time.monotonic_ns())
        if grace_ms is None:
            grace_ms = 5000 if report.backend == "s3" else 0
        # A call cut short may land until `grace_ms` after its process died
        # (a request the service had whole when the process died): the final
        # reads begin after that, so that they see the store as it stays.
        if grace_ms != float("inf"):
            time.sleep(grace_ms / 1000)
        final = subprocess.run(
            [
                sys.executable,
                "-c",
                FINAL,
                url,
                str(logs / "final.jsonl"),
                str(PAD_SIZE),
                json.dumps(KEYS),
            ],
            capture_output=True,
            check=False,
            text=True,
            env=env,
            timeout=600,
        )
        if final.returncode != 0:
            report.failures.append(f"final check failed: {final.stderr[-2000:]}")
            return report
        report.final = json.loads(final.stdout)
        deadlines = {
            name: None if grace_ms == float("inf") else died + int(grace_ms * 1e6)
            for name, died in deaths.items()
        }
        (logs / "deadlines.json").write_text(json.dumps(deadlines))
        ops, errors, report.kills_mid_call = read_history(
            sorted(logs.glob("*.jsonl")),
            deadlines,
            None if grace_ms == float("inf") else int(grace_ms * 1e6),
        )
        report.errors = errors
        tally(ops, report)
        judge(ops, report, stale_read_ms, measure_lag)
        if report.backend == "folder":
            check_pads(store_path, report)
    return report


def tally(ops: list[Op], report: Report) -> None:
    for op in ops:
        if op.process == "final":
            continue
        report.calls_completed += op.end is not None
        report.calls_killed += op.end is None
        report.puts += op.kind == "put"
        report.removes += op.kind == "remove"
        report.renames += op.kind == "rename"
        report.gets_fresh += op.kind == "get" and op.fresh
        report.gets_plain += op.kind == "get" and not op.fresh
        report.refused_pending += op.outcome == PENDING


def judge(ops: list[Op], report: Report, stale_read_ms: float, measure_lag: bool) -> None:
    """Linearizability of the calls with a refresh before each get, then of
    every call (plain gets allowed to lag `stale_read_ms`), then the final
    state."""
    fresh_only = [op for op in ops if op.kind != "get" or op.fresh]
    report.anomalies = [str(anomaly) for anomaly in check(fresh_only)]
    if not report.anomalies:
        lag = int(stale_read_ms * 1e6)
        report.plain_read_anomalies = [str(anomaly) for anomaly in check(ops, lag)]
        if report.plain_read_anomalies and measure_lag:
            report.plain_read_lag_ms = least_lag(ops)
    final = report.final
    failures = report.failures
    failures += [f"error: {error}" for error in report.errors]
    failures += [f"anomaly: {anomaly}" for anomaly in report.anomalies]
    # keys() lists stored items (a pending upload's key only if it also holds one).
    if final["listed"] != final["read"]:
        failures.append(f"keys() lists {final['listed']}, reads found {final['read']}")
    if not final["verify_ok"]:
        failures.append(f"verify: damaged {final['damaged']}, missing pads {final['missing_pads']}")
    if final["pending_after"]:
        failures.append(f"{final['pending_after']} uploads still pending")
    if final["used"] != final["item_bytes"]:
        failures.append(f"used space {final['used']} != the items' {final['item_bytes']} bytes")
    if final["used"] + final["free"] != final["total"]:
        failures.append(f"used + free != total: {final}")


LAGS_MS = (1, 2, 5, 10, 20, 50)


def least_lag(ops: list[Op]) -> float:
    """The least of `LAGS_MS` that explains every plain get (``inf`` if
    none does: a longer lag makes plain gets overlap so many calls that the
    search grows too large to be worth it), found by bisection."""
    low, high = -1, len(LAGS_MS)
    while high - low > 1:
        middle = (low + high) // 2
        if check(ops, LAGS_MS[middle] * 1_000_000):
            low = middle
        else:
            high = middle
    return LAGS_MS[high] if high < len(LAGS_MS) else float("inf")


def check_pads(store_path: Path, report: Report) -> None:
    """No pad forgotten: every pad file of the folder is in the map (pads
    reserved but never written have none yet), and no partial write is left."""
    folder = store_path / "p"
    files = os.listdir(folder) if folder.exists() else []
    pads = [name for name in files if len(name) == 32]
    if len(pads) > report.final["pads"]:
        report.failures.append(f"{len(pads)} pads on disk, the map knows {report.final['pads']}")
    if len(files) != len(pads):
        report.failures.append(f"partial writes left behind: {set(files) - set(pads)}")


def s3_url() -> str:
    """A fresh prefix under ``$ANTHILL_TEST_S3_URL``."""
    base, _, query = os.environ["ANTHILL_TEST_S3_URL"].partition("?")
    return f"{base.rstrip('/')}/lin-{uuid.uuid4().hex}" + (f"?{query}" if query else "")


def r9_row(summary: dict) -> str:
    """The docs/reliability.md row of one run's printed summary."""
    lag = summary.get("plain_read_lag_ms")
    plain = f"{summary['plain_read_anomalies']} anomalies among plain gets (no refresh)"
    if lag == float("inf"):
        plain += f", not explained by a lag of {LAGS_MS[-1]} ms"
    elif lag:
        plain += f", explained by a lag of {lag} ms"
    return (
        f"| R9 linearizability, {summary['backend']} (`tests_py/lin_harness.py`) | 4 writer "
        f"processes, {summary['kills']} SIGKILLs ({summary['kills_mid_call']} inside a call), "
        f"{summary['calls_completed']} completed calls ({summary['puts']} puts, "
        f"{summary['removes']} removes, {summary['renames']} renames, {summary['gets_fresh']} "
        f"gets after a refresh, {summary['gets_plain']} without) on 6 keys; history checked "
        f"against the sequential model: {summary['anomalies']} anomalies, {plain}; final reads "
        f"from a fresh process, `verify(deep=True)`, no pad forgotten | "
        f"{len(summary['failures'])} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--row", metavar="JSON", help="print the docs row of a saved summary")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--s3", action="store_true", help="on $ANTHILL_TEST_S3_URL (Garage)")
    parser.add_argument(
        "--fault", default="", choices=["", "stale-cache", "second-handle", "lost-write"]
    )
    parser.add_argument("--stale-read-ms", type=float, default=0)
    parser.add_argument("--reads", type=float, default=0.35, help="the share of gets")
    parser.add_argument("--keep", type=Path, help="write the history's logs to this folder")
    parser.add_argument(
        "--grace-ms",
        type=float,
        default=None,
        help="how long after its process died a killed call may take effect "
        "(default 0 on a folder, 2000 on S3; inf: ever)",
    )
    args = parser.parse_args()
    if args.row:
        print(r9_row(json.loads(Path(args.row).read_text())))
        return
    url = s3_url() if args.s3 else None
    report = run(
        args.kills,
        args.seed,
        url,
        args.fault,
        args.stale_read_ms,
        args.grace_ms,
        args.reads,
        measure_lag=True,
        keep=args.keep,
    )
    summary = {
        **report.__dict__,
        "anomalies": len(report.anomalies),
        "plain_read_anomalies": len(report.plain_read_anomalies),
    }
    print(json.dumps(summary, indent=2))
    for text in report.anomalies + report.plain_read_anomalies:
        print(text, file=sys.stderr)
    sys.exit(1 if report.failures else 0)


if __name__ == "__main__":
    main()
