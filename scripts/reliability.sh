#!/usr/bin/env bash
# The full reliability suite, and docs/reliability.md from its results: 250
# SIGKILLed writers (and 250 more where interrupted overwrites lose the
# object, as on Garage), faults at every step, tampering, bad input, several
# writers, fuzzing of every decoder (60 s per target by default), and 200
# races of 4 processes creating one store per backend (S3 on a local 3-node
# Garage cluster started here), and 300 simulated power cuts per fsync
# setting (a FUSE file system that forgets what was not synced), and 500
# calls cancelled at random instants (asyncio cancellation, Ctrl-C, SIGKILL),
# and R9: histories of 4 writer processes SIGKILLed at random (200 kills on a
# folder and 200 on Garage) checked for linearizability.
#
#   bash scripts/reliability.sh [KILLS] [FUZZ_SECONDS_PER_TARGET] [RACE_TRIALS] [POWER_CUTS] [CANCELLATIONS] [R9_KILLS]
#   bash scripts/reliability.sh --r9 [R9_KILLS]    # R9 alone: prints its two rows
#
# CI runs the bounded versions of the same tests (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
only_r9=false
if [[ ${1:-} == --r9 ]]; then
    only_r9=true
    shift
    r9_kills=${1:-200}
else
    r9_kills=${6:-200}
fi
kills=${1:-250}
fuzz_seconds=${2:-60}
race_trials=${3:-200}
power_cuts=${4:-300}
cancellations=${5:-500}
logs=$(mktemp -d)

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
$only_r9 || bash scripts/install_fuse.sh
python -m pip install --quiet -e '.[test]'

# R9: on a folder, then on a Garage cluster started here (and left running
# for the creation races below).
r9() {
    echo "== linearizability: $r9_kills kills on a folder, $r9_kills on Garage" >&2
    python tests_py/lin_harness.py --kills "$r9_kills" --seed 1 --keep "$logs/lin-folder" \
        >"$logs/lin-folder.json" \
        2>"$logs/lin-folder.txt" || true
    bash scripts/garage.sh install
    garage_env=$(bash scripts/garage.sh start 3) # an assignment fails under set -e
    trap 'bash scripts/garage.sh stop' EXIT
    eval "$garage_env"
    python tests_py/lin_harness.py --kills "$r9_kills" --seed 1 --s3 --keep "$logs/lin-s3" \
        >"$logs/lin-s3.json" \
        2>"$logs/lin-s3.txt" || true
    for backend in folder s3; do
        python tests_py/lin_harness.py --row "$logs/lin-$backend.json"
        cat "$logs/lin-$backend.txt" >&2 # the anomalies, with their history excerpts
    done | tee "$logs/lin-rows.md" >&2
}
r9
if $only_r9; then
    exit 0
fi

echo "== crash: $kills kills" >&2
python tests_py/crash_harness.py --kills "$kills" --seed 1 | tee "$logs/crash.json" >&2
echo "== crash where interrupted overwrites lose the object (sim+ torn_overwrites): $kills kills" >&2
python tests_py/crash_harness.py --kills "$kills" --seed 1 --torn | tee "$logs/crash-torn.json" >&2

echo "== cancellations: $cancellations" >&2
python tests_py/cancel_harness.py --cancellations "$cancellations" --seed 1 | tee "$logs/cancel.json" >&2

echo "== faults, tampering, journal properties, fuzz regressions (Rust)" >&2
cargo test --release --test tests_rs -- reliability index_journal fuzz_regressions 2>&1 |
    tee "$logs/rust.txt" >&2

echo "== bad input, several writers (Python)" >&2
python -m pytest -q tests_py/test_bad_input.py tests_py/test_writers.py tests_py/test_crash.py 2>&1 |
    tee "$logs/python.txt" >&2

echo "== creation races: $race_trials per backend" >&2
ANTHILL_RACE_TRIALS=$race_trials ANTHILL_RACE_REPORT="$logs/race.jsonl" \
    python -m pytest -q tests_py/test_open_race.py 2>&1 | tee "$logs/race.txt" >&2

echo "== power loss: $power_cuts cuts per fsync setting" >&2
for fsync in true false; do
    python tests_py/power_harness.py --cuts "$power_cuts" --fsync "$fsync" --seed 1 \
        >"$logs/power-$fsync.json"
done

echo "== fuzzing, $fuzz_seconds s per target" >&2
bash scripts/fuzz.sh "$fuzz_seconds" 2>&1 | tee "$logs/fuzz.txt" >&2

python - "$logs" "$kills" "$fuzz_seconds" "$race_trials" "$power_cuts" "$cancellations" "$r9_kills" <<'PY'
import json, re, subprocess, sys, platform, datetime, pathlib
logs, kills, fuzz_seconds, race_trials, power_cuts, cancellations, r9_kills = pathlib.Path(sys.argv[1]), *sys.argv[2:8]
sys.path.insert(0, "tests_py")
from power_harness import power_rows
crash = json.loads((logs / "crash.json").read_text())
torn = json.loads((logs / "crash-torn.json").read_text())
cancel = json.loads((logs / "cancel.json").read_text())
rust = (logs / "rust.txt").read_text()
python = (logs / "python.txt").read_text()
fuzz = (logs / "fuzz.txt").read_text()
rust_result = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", rust)[-1]
py_result = re.search(r"(\d+) passed(?:, (\d+) failed)?", python)
bad_inputs = subprocess.run(
    [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests_py/test_bad_input.py"],
    capture_output=True, text=True).stdout.count("::")
races = [json.loads(line) for line in (logs / "race.jsonl").read_text().splitlines()]
fuzz_rows = re.findall(r"^(\w+): (\d+) execs, (\d+) crashes", fuzz, re.M)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
def cancel_row(c):
    return (
        f"| R10 cancellation (`tests_py/cancel_harness.py`) | {c['cancellations']} calls stopped at "
        f"random instants ({c['async_cancels']} asyncio cancellations, {c['interrupts']} Ctrl-C, "
        f"{c['kills']} SIGKILLs) among puts, overwrites, removes, renames, flushes and "
        f"compactions, over {c['rounds']} worker processes and {c['operations_done']} completed "
        f"calls; after each process a fresh one checked every key ({c['items_checked']} item "
        f"checks), `verify(deep=True)` and a write; {c['hangs']} hangs | {len(c['failures'])} |"
    )


lines = [
    "# Reliability",
    "",
    f"Generated by `bash scripts/reliability.sh {kills} {fuzz_seconds} {race_trials} {power_cuts} {cancellations} {r9_kills}` on {datetime.date.today()} "
    f"(commit {commit}, {cpu}). CI runs bounded versions of the same tests on every change "
    "(30 kills, no fuzzing, 50 races per backend, 12 power cuts per fsync setting, "
    "60 cancellations, R9 with 20 kills on a folder and 8 on Garage).",
    "",
    "| suite | what was done | failures |",
    "| --- | --- | --- |",
    f"| R1 crash (`tests_py/crash_harness.py`) | {crash['kills']} writer processes SIGKILLed "
    f"({crash['kills_mid_operation']} inside an operation) after {crash['operations_done']} completed "
    f"operations; {crash['items_checked']} item checks after reopening; "
    f"{crash['pending_resumed']} pending uploads resumed | {len(crash['failures'])} |",
    f"| R1 crash, torn overwrites (`crash_harness.py --torn`: `sim+` with `torn_overwrites=true`, "
    f"where a put interrupted by the writer's death leaves no object, as on Garage) | "
    f"{torn['kills']} writer processes SIGKILLed ({torn['kills_mid_operation']} inside an "
    f"operation, {torn['kills_mid_flush']} inside a flush); {torn['items_checked']} item checks "
    f"after reopening | {len(torn['failures'])} |",
    f"| R2 faults, R3 tampering, journal properties (`tests_rs/reliability.rs`, "
    f"`tests_rs/index_journal.rs`, `tests_rs/fuzz_regressions.rs`) | a permanent and a persistent "
    "transient fault at each of 32 steps of a put (64 faults), fail rate 0.2 on every operation "
    "kind over 100 puts and gets, fail rate 1.0; pad bit flip, truncation, extension, swap, "
    "rollback, deletion; index log bit flip, truncation, extension, swap, deletion, metadata edit; "
    f"wrong secret; 48 random put/remove/reopen sequences; {rust_result[1]} tests | {rust_result[2]} |",
    f"| R4 bad input, R5 several writers (`tests_py/test_bad_input.py`, `tests_py/test_writers.py`) "
    f"| {bad_inputs} bad-input cases through the API and the CLI (incl. a full 512 KiB tmpfs); "
    "4 writer processes x 250 puts with 2 reader processes on one folder store | "
    f"{py_result.group(2) or 0} |",
    cancel_row(cancel),
    *(logs / "lin-rows.md").read_text().splitlines(),
]
for race in races:
    lines.append(
        f"| R7 creation race, {race['backend']} (`tests_py/test_open_race.py`) | {race['trials']} "
        "trials of 4 processes opening one new store at once and storing a key each, then every "
        f"key read back | {len(race['failures'])} |"
    )
for fsync in ("true", "false"):
    lines.append(power_rows(json.loads((logs / f"power-{fsync}.json").read_text())))
for target, execs, crashes in fuzz_rows:
    lines.append(f"| R6 fuzz `{target}` | {int(execs):,} executions in {fuzz_seconds} s | {crashes} |")
lines += [
    "",
    "## Failures found and fixed",
    "",
    "- Two handles writing one store could both give out the same pad ordinal: every change now "
    "runs under the store's writer lock (`flock` on a folder, a lease on S3) and catches up first.",
    "- A small put could commit into a new pad before the index recorded that pad: new pads are "
    "now wholly taken until recorded.",
    "- An interrupted multi-pad put could drop its pending record half-way: the put now waits for "
    "it to settle.",
    "- A SIGKILL during a local put left a `#n` staging file in the store folder: removed on open.",
    "- Fuzzing: five overflows and one slice panic on out-of-range numbers in authenticated "
    "objects (`fuzz/regressions.md`): now integrity errors.",
    "- Four processes opening one new store at once could each write their own metadata (two "
    "store ids under one name), losing the store in 8 of 20 trials on a folder: a new store's "
    "metadata is now created only if absent, under the writer lock, and the loser adopts the "
    "winner's; the key file is linked into place whole.",
    "- The crash harness itself stopped reading a writer's output at the kill, so on a busy "
    "machine it missed operations the writer finished before the signal landed and reported "
    "sound items as gone or changed: it now reads everything the writer printed.",
    '- A log write that failed but may have landed was followed by a different batch under the same sequence number, so handles could disagree about the index: log objects are now created only if absent, a failed write is read back, and a doubtful put keeps its space until settled (`tests_rs/log_history.rs`).',
    "- A writer checkpointed and deleted log objects after answering its callers, racing another writer's catch-up, which then wrote on a stale index and lost items (6 of 25 runs of `two_handles_on_one_folder_share_it_safely`): checkpoints now run under the writer lock.",
    '- An S3 writer paused past its lease could overwrite pads the next holder had filled: every S3 write is now fenced by the lease (`tests_py/test_s3.py`).',
    '- A restored older copy of a store, or one whose newest log objects were deleted, opened without complaint: the log is a hash chain and each machine remembers how far it has seen each store (`tests_py/test_rollback.py`).',
    "- Power loss (R8): a new folder store's folder was never flushed into its parent, so a cut "
    "right after creating it lost the store and every item stored with `fsync=true`; without "
    "`fsync` its metadata could be left empty, losing the store for good; the key file's new "
    "folders were not flushed, losing the key. Folder and metadata are now flushed whatever "
    "`fsync` says, and so are the key file's folders (`tests_py/test_power_loss.py`).",
    "- Power loss (R8) on the small-item path: without `fsync` a cut could leave a pad file "
    "empty, and every later write-back into it failed, so its small items stayed in the log for "
    "good, blocking checkpoints and `close()`: the write-back now rebuilds such a pad from the "
    "items still in the log (`small_writes::a_write_back_rebuilds_a_pad_whose_file_was_emptied`); "
    "write-backs are durable whatever `fsync` says, so a small put never takes older items of "
    "its pad with it (`test_without_fsync_a_written_back_pad_keeps_older_items`).",
    "- Cancellation (R10): a put, rename, remove or compaction cancelled (an asyncio timeout, a "
    "Ctrl-C) while its index record was being written gave its space back although the record "
    "landed, so two items shared one place and every later open refused the store; a flush "
    "cancelled during its write-back left its pads claimed, so the next flush, close or "
    "checkpoint hung. A commit now runs in a task that owns the space it names, and a "
    "write-back's claim is given back when it is dropped (`tests_rs/cancellation.rs`).",
    "- Opening beside a writer failed with `IntegrityError` in up to 4 of 5 opens (a log listing "
    "taken while objects were created has gaps) and waited for the writer lock as long as the "
    "writer looped: log objects are now read by number, and opening takes no lock "
    "(`tests_py/test_cancellation.py`).",
    "",
    "## Guarantees, as tested",
    "",
    "- After `store_item` returns, the item survives a crash; an interrupted put leaves the key "
    "absent or pending (`store_item(..., resume=True)` finishes it without re-uploading "
    "committed pads).",
    "- Every pad the backend holds is in the index, or adopted by the next open that finds no "
    "writer at work (else by that handle's first change).",
    "- A call cancelled at any instant (asyncio, Ctrl-C, SIGKILL) is as harmless as a crash: its "
    "key holds its old or its new value, nothing else is damaged, and the store takes writes.",
    "- Tampered, swapped, rolled-back or foreign objects are `IntegrityError`; a missing pad is a "
    "`BackendError` naming it. Wrong bytes are never returned: the AEAD tag of every object and each item's digest are checked.",
    "- Several processes on one folder store: changes are serialised by an OS file lock; readers "
    "catch up without it.",
    "- Several processes creating one store at once (folder, S3, the default store and its key "
    "file) all end up in the same store, and every key any of them stored reads back.",
    '- A store behind what this machine has seen of it (restored, or its newest log objects deleted) is an `IntegrityError` naming a rollback, unless opened with `allow_rollback=True`.',
    "- With `fsync=true`, a power loss at any instant loses no item whose `store_item` returned "
    "and no removal that returned, and the store opens; without it, what R8 lost is listed in "
    "the README (what an OS crash or power loss can lose), and the store opened after every cut, "
    "at worst after the documented recovery.",
    "- Four writer processes SIGKILLed at random, on a folder and on Garage (R9): every call "
    "that returned took effect at one instant between its start and its return, in one order "
    "that every process's reads after a refresh agree with; a killed call took effect before "
    "its process died or not at all. Nothing acknowledged was lost.",
]
# The R9 section (its model, checker and findings) is written by hand: kept.
previous = pathlib.Path("docs/reliability.md").read_text()
kept = re.search(r"^## R9.*?(?=^## |\Z)", previous, re.M | re.S)
if kept:
    lines += ["", kept.group(0).rstrip()]
pathlib.Path("docs/reliability.md").write_text("\n".join(lines) + "\n")
print("wrote docs/reliability.md")
PY
