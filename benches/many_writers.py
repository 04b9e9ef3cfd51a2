"""The W rows (many writers at once): running them, their rows of the
results table, and their sections of docs/benchmarks.md.

Every W row starts N = 1, 2, 4 writer processes together and measures
their aggregate throughput (benches/python/writers.py); W4 is a dask
cluster of 4 worker processes writing one zarr array. Peers run in the same
run, interleaved with anthill round by round, so ratios hold on a shared,
noisy machine.

The first run of these rows, before writers could commit side by side,
is kept as the baseline (benches/baselines/W*.json): each section shows it
beside the current figures, so a rerun shows what changed. A run records
itself as the new baseline only when asked (`ANTHILL_BENCH_W_BASELINE=1`).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASELINES = Path(__file__).resolve().parent / "baselines"
COMMAND = "bash scripts/bench.sh --only W1,W2,W3,W4"
SCRIPTS = {
    "W1": "w1_folder_writers.py",
    "W2": "w2_sim_writers.py",
    "W3": "w3_s3_writers.py",
    "W4": "w4_dask_zarr.py",
}
WRITERS = ("1", "2", "4")
MIB = 1 << 20

#: (name, figure, reference, ratio, target, met): a row of the results table.
RowCells = tuple[str, str, str, float | None, str, bool | None]


def run(python: Callable[..., dict[str, Any]], name: str) -> dict[str, Any]:
    """Runs the W row `name` with the suite's `python` runner; records the
    result as the baseline when ANTHILL_BENCH_W_BASELINE=1."""
    result = python(SCRIPTS[name], timeout=1800)
    if os.environ.get("ANTHILL_BENCH_W_BASELINE") == "1":
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=BASELINES.parent,
        ).stdout.strip()
        recorded = {
            "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "result": {k: v for k, v in result.items() if not k.startswith("_")},
        }
        BASELINES.mkdir(exist_ok=True)
        (BASELINES / f"{name}.json").write_text(json.dumps(recorded, indent=1) + "\n")
    return result


def baseline(name: str) -> dict[str, Any] | None:
    path = BASELINES / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def per_s(value: float, unit: str = "puts") -> str:
    return f"{value:,.1f} {unit}/s" if value < 100 else f"{value:,.0f} {unit}/s"


def at_least(name: str, figure: str, reference: str, ratio: float, bound: float) -> RowCells:
    return (name, figure, reference, ratio, f"≥ {bound:g}", ratio >= bound)


# --- rows --------------------------------------------------------------------


def w1_rows(r: dict[str, Any]) -> list[RowCells]:
    best = r["best"]
    ours, one = best["anthill"]["4"], best["anthill"]["1"]
    disk, local = best["diskcache"]["4"], best["obstore_local"]["4"]
    name = "W1 many writers, folder, 1 KiB sync puts"
    figure = f"anthill, 4 writers: {per_s(ours)}"
    return [
        at_least(
            f"{name}: 4 writer processes against 1",
            figure,
            f"anthill, 1 writer: {per_s(one)}",
            ours / one,
            1.0,
        ),
        at_least(
            f"{name}: 4 writer processes against diskcache's 4",
            figure,
            f"diskcache, 4 writers: {per_s(disk)}",
            ours / disk,
            1.0,
        ),
        (
            f"{name}: 4 writer processes against obstore LocalStore's 4",
            figure,
            f"obstore LocalStore, 4 writers: {per_s(local)}",
            ours / local,
            "none (reported)",
            None,
        ),
    ]


def w2_rows(r: dict[str, Any]) -> list[RowCells]:
    rows = []
    for size, label in (("small", "1 KiB sync puts"), ("large", "1 MiB puts")):
        best = r[size]["best"]["anthill"]
        rows.append(
            at_least(
                f"W2 many writers, sim+file {r['latency_ms']} ms per call, {label}: "
                "4 writer processes against 1",
                f"4 writers: {per_s(best['4'])}",
                f"1 writer: {per_s(best['1'])}",
                best["4"] / best["1"],
                3.0,
            )
        )
    return rows


def w3_rows(r: dict[str, Any]) -> list[RowCells]:
    rows = []
    for size, label, bound in (("small", "1 KiB sync puts", 0.5), ("large", "1 MiB puts", 0.7)):
        best = r[size]["best"]
        ours, peer = best["anthill"]["4"], best["obstore_s3"]["4"]
        rows.append(
            at_least(
                f"W3 many writers, Garage (3 nodes), {label}: 4 writer processes "
                "against obstore S3Store's 4",
                f"anthill, 4 writers: {per_s(ours)} (1 writer: {per_s(best['anthill']['1'])})",
                f"obstore, 4 writers: {per_s(peer)}",
                ours / peer,
                bound,
            )
        )
    return rows


def w4_rows(r: dict[str, Any]) -> list[RowCells]:
    size = r["array_bytes"] / MIB
    rows = []
    for ours, peer, where, peer_label in (
        ("anthill_folder", "local_store", "folder", "zarr LocalStore"),
        ("anthill_s3", "obstore_s3", "Garage (3 nodes)", "zarr ObjectStore(obstore S3Store)"),
    ):
        ours_s, peer_s = r["best_s"][ours], r["best_s"][peer]
        if r["all_capped"][ours]:
            figure = f"not finished in {ours_s:.0f} s (cancelled): ≤ {size / ours_s:,.1f} MiB/s"
        else:
            figure = f"{size / ours_s:,.1f} MiB/s ({ours_s:.2f} s)"
        if r["all_capped"][peer]:
            reference = f"{peer_label}: not finished in {peer_s:.0f} s"
        else:
            reference = f"{peer_label}: {size / peer_s:,.1f} MiB/s ({peer_s:.2f} s)"
        rows.append(
            at_least(
                f"W4 dask to_zarr of {size:,.0f} MiB in 2 MB chunks, 4 worker processes, "
                f"{where}: AnthillStore against {peer_label}",
                figure,
                reference,
                peer_s / ours_s,
                0.8,
            )
        )
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[RowCells]]] = {
    "W1": w1_rows,
    "W2": w2_rows,
    "W3": w3_rows,
    "W4": w4_rows,
}


# --- sections ------------------------------------------------------------------

LABELS = {
    "anthill": "anthill",
    "diskcache": "diskcache",
    "obstore_local": "obstore LocalStore",
    "obstore_s3": "obstore S3Store",
}

OVERVIEW = (
    "**W: many writers.** W1 to W4 measure processes writing one store at once: N = 1, 2, 4 "
    "writer processes (W1 to W3) or a dask cluster of 4 worker processes (W4), each storing "
    f"keys of its own, against peers that let writers run side by side. `{COMMAND}` reruns "
    "them alone (a few minutes; it starts a Garage cluster of its own for W3 and W4, and "
    "installs the peers); the machine, commit and load of that run are the `Rows W1, W2, "
    "W3, W4` line under Machine above. The machine is shared (other engineers build Rust "
    "on its 2 cores at the same time), so absolute figures move from run to run and between "
    "rounds: the peers are measured in the same run, interleaved with anthill round by round, "
    "so that the ratios hold, and the table above gives each row's ratio against its target. "
    "Each section keeps the figures of the first run, before the redesign that lets writers "
    "commit side by side, as its baseline."
)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def writers_table(cases: dict[str, Any], item_bytes: int) -> list[str]:
    """Best aggregate rate of each side at N = 1, 2, 4 (every round in
    brackets), and how the puts of the last N = 4 round fell to the writers."""
    large = item_bytes >= MIB
    unit = "MiB/s" if large else "puts/s"

    def cell(value: float) -> str:
        return f"{value * item_bytes / MIB:,.1f}" if large else f"{value:,.0f}"

    out = [
        (
            f"| {unit}, all writers together | N=1 | N=2 | N=4 | N=4 / N=1 "
            "| puts of each writer (last round, N=4) |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for side, best in cases["best"].items():
        runs = cases["runs"][side]
        cells = [f"{cell(best[n])} ({', '.join(cell(x) for x in runs[n])})" for n in WRITERS]
        split = ", ".join(str(x) for x in cases["last"][side]["4"]["per_writer"])
        ratio = best["4"] / best["1"]
        out.append(f"| {LABELS[side]} | {' | '.join(cells)} | {ratio:.2f} | {split} |")
    out += one_after_another(cases)
    return out


def one_after_another(cases: dict[str, Any]) -> list[str]:
    """A note for each side whose writers, in the last N = 4 round, did not
    run side by side: one made nearly all the puts while the others waited."""
    notes = []
    for side, last in cases["last"].items():
        split = last["4"]["per_writer"]
        if split[0] * 20 <= split[-1]:
            notes.append(
                f"{LABELS[side]}'s writers ran one after another, not side by side: in the last "
                f"N = 4 round one made {split[-1]:,} puts while the others made "
                f"{', '.join(f'{x:,}' for x in split[:-1])}: they waited for one another, so the "
                "aggregate is one writer's rate at best."
            )
    return ["", *notes] if notes else []


def with_baseline(
    name: str, tables: Callable[[dict[str, Any]], list[str]], current: dict[str, Any]
) -> list[str]:
    """The baseline run's tables, when one is recorded (and is not this run)."""
    kept = baseline(name)
    if kept is None:
        return ["No baseline recorded (benches/baselines/): see benches/many_writers.py.", ""]
    same = kept["result"] == {k: v for k, v in current.items() if not k.startswith("_")}
    intro = (
        f"**Baseline before the many-writers redesign** (benches/baselines/{name}.json: commit "
        f"{kept['commit']}, {kept['date']}, load average {kept['load_average']} at the end), "
        "when one writer lock serialised every change"
    )
    if same:
        return [intro + ": this run is the baseline (the tables above).", ""]
    return [intro + ":", "", *tables(kept["result"]), ""]


def w1_section(r: dict[str, Any]) -> list[str]:
    def tables(x: dict[str, Any]) -> list[str]:
        return writers_table(x, x["item_bytes"])

    return [
        "### W1 many writers: folder",
        "",
        OVERVIEW,
        "",
        (
            "N = 1, 2, 4 writer processes (spawned) started together behind a barrier, each "
            "with its own handle on one local folder store (default options, 4 MiB pads, "
            "created before they start), each a sync loop of `store_item` of 1 KiB under keys "
            "of its own, for "
            f"{r['duration_s']:g} s after the barrier; against diskcache "
            "(`diskcache.Cache(folder).set`, its defaults: SQLite in WAL mode, no fsync per "
            "set) and obstore's `LocalStore` (`obstore.put`, a file per key) with the same N "
            "processes, every case in a fresh folder on the same disk. Each writer first "
            "stores one untimed item (the store's first put, the connection). The aggregate "
            "is all puts over the span from the first writer's start to the last one's end: "
            "a put begun before the deadline counts in full, its wait for a lock included. "
            f"{plural(r['rounds'], 'round')}, each every N and at each N every side, in an order that "
            "rotates from round to round; a figure is the best round (load from elsewhere "
            "only adds time), every round in brackets. The harness is "
            "benches/python/writers.py. The last column shows how the puts of one N = 4 "
            "round fell to the writers: whether they ran side by side or one after another."
        ),
        "",
        *tables(r),
        "",
        *with_baseline("W1", tables, r),
    ]


def w2_section(r: dict[str, Any]) -> list[str]:
    def tables(x: dict[str, Any]) -> list[str]:
        return [
            "1 KiB sync puts:",
            "",
            *writers_table(x["small"], x["small"]["item_bytes"]),
            "",
            "1 MiB puts:",
            "",
            *writers_table(x["large"], x["large"]["item_bytes"]),
        ]

    return [
        "### W2 many writers over a network (sim, 20 ms per call)",
        "",
        (
            "As W1, on one store at `sim+file://<folder>?latency_ms="
            f"{r['latency_ms']}` (every backend call takes {r['latency_ms']} ms, as for "
            "machines writing one store over a network), each writer its own process with its "
            "own handle, anthill alone: a sync loop of 1 KiB puts, then one of 1 MiB puts, "
            f"{r['small']['duration_s']:g} s after the barrier, {plural(r['small']['rounds'], 'round')}. "
            "The target is that 4 writers together store at least 3 times what one does."
        ),
        "",
        *tables(r),
        "",
        *with_baseline("W2", tables, r),
    ]


def w3_section(r: dict[str, Any]) -> list[str]:
    def tables(x: dict[str, Any]) -> list[str]:
        return [
            "1 KiB sync puts:",
            "",
            *writers_table(x["small"], x["small"]["item_bytes"]),
            "",
            "1 MiB puts:",
            "",
            *writers_table(x["large"], x["large"]["item_bytes"]),
        ]

    return [
        "### W3 many writers on S3 (Garage)",
        "",
        (
            f"As W1, on one store on a local Garage cluster of {r['nodes']} nodes "
            "(scripts/garage.sh; a fresh prefix per case), each writer its own process with "
            "its own handle: a sync loop of 1 KiB puts, then one of 1 MiB puts, "
            f"{r['small']['duration_s']:g} s after the barrier, {plural(r['small']['rounds'], 'round')}; "
            "against obstore's `S3Store` (`obstore.put`, an object per key) with the same N "
            "processes on the same bucket. The client processes and the three Garage nodes "
            "share the machine's cores."
        ),
        "",
        *tables(r),
        "",
        *with_baseline("W3", tables, r),
    ]


def w4_section(r: dict[str, Any]) -> list[str]:
    labels = {
        "anthill_folder": "AnthillStore, folder store",
        "local_store": "zarr LocalStore, folder",
        "anthill_s3": "AnthillStore, Garage store",
        "obstore_s3": "zarr ObjectStore(obstore S3Store), Garage",
    }

    def tables(x: dict[str, Any]) -> list[str]:
        size = x["array_bytes"] / MIB
        out = ["| store | best | rounds (s) |", "|---|---|---|"]
        for side, best in x["best_s"].items():
            capped = x["all_capped"][side]
            figure = (
                f"not finished in {best:.0f} s (cancelled)"
                if capped
                else f"{best:.2f} s ({size / best:,.1f} MiB/s)"
            )
            rounds = ", ".join(
                f"{s:.2f}{' (cancelled)' if c else ''}"
                for s, c in zip(x["runs_s"][side], x["capped"][side], strict=True)
            )
            out.append(f"| {labels[side]} | {figure} | {rounds} |")
        return out

    return [
        "### W4 dask writing one zarr array",
        "",
        (
            f"`dask.array.to_zarr` of a {r['array_bytes'] / MIB:,.0f} MiB float64 array "
            f"(random, seeded; {r['chunks']} chunks of {r['chunk_bytes']:,} B, uncompressed) "
            "from a dask.distributed `LocalCluster(n_workers="
            f"{r['workers']}, threads_per_worker=1, processes=True)`, so {r['workers']} worker "
            "processes store chunks into one store at once: through `anthill.zarr.AnthillStore` "
            "on a local folder store against zarr's `LocalStore` on a folder of the same disk, "
            "and through `AnthillStore` on a store on the Garage cluster (3 nodes) against "
            "zarr's `ObjectStore` over obstore's `S3Store` on the same bucket. One cluster "
            "serves every case (`ANTHILL_SECRET` set before it starts; the workers reopen the "
            "store from its URL); each case writes into a fresh folder or prefix; the time is "
            "the whole write, the chunks computed on the workers as they are stored. Each "
            "array is read back on the cluster and its sum checked (untimed). "
            f"{plural(r['rounds'], 'round')}, the order rotating; the figure is the best round. "
            "A write "
            f"not finished after {r['cap_s']:g} s is cancelled, so that the row's time stays "
            "bounded: its throughput is then an upper bound."
        ),
        "",
        *tables(r),
        "",
        *with_baseline("W4", tables, r),
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "W1": w1_section,
    "W2": w2_section,
    "W3": w3_section,
    "W4": w4_section,
}
