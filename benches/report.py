"""The part of docs/benchmarks.md below the table: how each row is measured,
how its bound is computed, and the figures behind the verdict."""

from __future__ import annotations

from typing import Any

import many_writers
from peer_rows import g1_section, z2_section

MIB = 1 << 20


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


def mib_s(size: int, seconds: float) -> str:
    return f"{size / seconds / MIB:,.0f} MiB/s"


def gb_s(per_s: float) -> str:
    return f"{per_s / 1e9:.2f} GB/s"


def p1(r: dict[str, Any]) -> list[str]:
    n, lat = r["pads"], r["latency_ms"]
    rc, uc = r["reservation_concurrency"], r["upload_concurrency"]
    waves = -(-n // rc)
    out = [
        "### P1 pipelining",
        "",
        f"One put of {n} × 4 MiB of random bytes into a fresh store on `sim+memory://` with "
        f"{lat:g} ms per call, {rc} reservations and {uc} uploads in flight (the Rust API, so "
        "the sim's op log and a timing pass-through are at hand). Median of "
        f"{len(r['runs_s'])} runs: " + ", ".join(ms(x) for x in r["runs_s"]) + ".",
        "",
        (
            "**The bound.** The op log shows the calls a put needing new pads makes: per new pad a "
            "`reserve`, then a `put` of its content (the upload) and a `verify` (the commit); for "
            "the index, a `put` + `verify` of one journal object; the counts of this run are below. "
            "The bound is the ideal schedule of those calls, each taking the sim's latency L: at "
            "most R reserves and U uploads in flight, a pad's upload starting the moment its "
            "reservation ends, and the index persisted after the last commit. With U ≥ R the "
            "uploads keep pace with the reservations, and the critical path is"
        ),
        "",
        (
            f"    T = ceil(N / R)·L + L (upload) + L (commit) + 2·L (index put + verify)"
            f" = ({waves} + 1 + 1 + 2) × {lat:g} ms = {ms(r['bound_s'])}"
        ),
        "",
        (
            f"(benches/src/pipelining.rs computes it by list scheduling for any N, R, U). The "
            f"two-phase figure runs the same calls with every upload waiting for the last "
            f"reservation: ceil(N/R)·L + ceil(N/U)·L + L + 2·L = {ms(r['two_phase_s'])}. "
            "Neither counts CPU time (sealing 256 MiB) nor calls a put could do "
            "without."
        ),
        "",
        "Diagnostics of the gap:",
        "",
        (
            f"- the same put with {r['small_pad_size'] // 1024} KiB pads (the same calls, next to "
            f"no CPU work): {ms(r['small_pads_measured_s'])}, "
            f"{r['small_pads_measured_s'] / r['bound_s']:.2f}× the bound: the schedule's own share;"
        ),
        (
            f"- the schedule the op log implies with CPU taken out (each call L, started when the "
            f"call before it in the log ended): {ms(r['log_schedule_s'])};"
        ),
        (
            f"- the bound if an upload slot stays taken through the commit, as anthill's upload "
            f"permit does: {ms(r['bound_if_slot_covers_commit_s'])} (two-phase: "
            f"{ms(r['two_phase_if_slot_covers_commit_s'])})."
        ),
        "",
        "Calls of the last run (from the op log):",
        "",
        "| calls | count |",
        "|---|---|",
    ]
    out += [f"| {name} | {count} |" for name, count in r["last_run"]["calls"].items()]
    out += [
        "",
        "Timeline of the last run (ms from the start of the put):",
        "",
        "| calls | start | end |",
        "|---|---|---|",
    ]
    for phase in r["last_run"]["phases"]:
        label = phase["call"] + (f" ×{phase['calls']}" if "calls" in phase else "")
        out.append(f"| {label} | {phase['start_ms']:.0f} | {phase['end_ms']:.0f} |")
    return out + [""]


def p2(r: dict[str, Any], cpu: dict[str, Any] | None) -> list[str]:
    size = r["bytes"]
    runs = r["runs_s"]
    out = [
        "### P2 throughput",
        "",
        (
            f"A put and a get of {size // MIB:,} MiB of random bytes (`os.urandom`) through the "
            "Python API on a fresh local folder store (4 MiB pads), against obstore's `LocalStore` "
            "putting and getting the same `bytes` object in a fresh folder under the same scratch "
            "directory. `os.sync()` before each timed put keeps one side's writeback out of the "
            "other's time; after one untimed round for each side (a process's first large put "
            "pays for faulting in fresh memory), the runs alternate which side goes first; "
            "medians of "
            f"{len(runs['anthill_put'])} runs. By default neither side fsyncs: anthill seals "
            "(AES-256-GCM) every pad and writes it atomically (temp file + rename, "
            "which survives a process crash, its documented promise); obstore writes and renames "
            "(its default). The durable row compares the two with fsync: anthill's put into a "
            "fresh store opened with `fsync=True` (every write flushed to disk before it returns), "
            "against obstore's put followed by an fsync of the file and its folder. Gets read "
            "what was just written, from the page cache on both sides; anthill reads straight "
            "into a new `bytes` object (and checks the item's digest), obstore returns "
            "its own buffer object (no copy into `bytes`)."
        ),
        "",
        "| | anthill | obstore |",
        "|---|---|---|",
        f"| put | {mib_s(size, r['anthill_put_s'])} | {mib_s(size, r['obstore_put_s'])} |",
        f"| get | {mib_s(size, r['anthill_get_s'])} | {mib_s(size, r['obstore_get_s'])} |",
        (
            f"| durable put (fsync) | {mib_s(size, r['anthill_put_fsync_s'])} (`fsync=True`) | "
            f"{mib_s(size, r['obstore_put_fsync_s'])} (put + fsync of file and folder) |"
        ),
        "",
        "Runs (s): "
        + "; ".join(f"{k} " + ", ".join(f"{x:.2f}" for x in v) for k, v in runs.items()),
        "",
    ]
    if cpu:
        seal_s = size / cpu["seal_bytes_per_s"]
        cores = cpu["cores"]
        out += [
            (
                "CPU reference on one core (benches/src/cpu.rs): sealing pads (AES-256-GCM) "
                f"{gb_s(cpu['seal_bytes_per_s'])}, XXH3-128 {gb_s(cpu['hash_bytes_per_s'])}, "
                f"memcpy {gb_s(cpu['copy_bytes_per_s'])}. A large item's pieces fill their pads, "
                "so its digest is made of the pads' authentication tags and nothing is hashed: "
                f"sealing the item alone takes {seal_s:.2f} s of one core, {seal_s / cores:.2f} s "
                f"if all {cores} cores share it perfectly, against obstore's whole put of "
                f"{r['obstore_put_s']:.2f} s and get of {r['obstore_get_s']:.2f} s. Sealing the "
                "item as 4 MiB pads and writing each to a file of its own (no rename, no fsync) "
                f"on all {cores} cores takes "
                f"{cpu['seal_and_write_1gib_s'] * size / (1 << 30):.2f} s (best of 3): the floor "
                "of a put on this machine, whatever else it costs."
            ),
            "",
        ]
    return out


def p3(r: dict[str, Any]) -> list[str]:
    fill = r["fill"]
    out = [
        "### P3 allocator",
        "",
        (
            "The memory map alone (`anthill::memory_map::MemoryMap`, no I/O), in a steady churn "
            f"at a fixed fill: each operation frees a random live item while more than {fill:.0%} "
            "of the pads' bytes are used, and allocates a new item otherwise, so the fill stays "
            f"at {fill:.0%} and the number of live items near N at every level. Sizes log-uniform "
            "100 B .. 1 MiB, 4 MiB pads; an allocation is `plan` + `take`, plus `add_pad` and "
            "`take` when the plan needs new pads, as the allocator does; a free returns every "
            "extent of the item. Setup, not timed: N / fill items stored one after another, then "
            f"random ones freed down to the fill, then {r['warm_up']} operations per live item "
            "so that the free space fragments as a long-lived store's does. Only the map is "
            "timed: operations run in batches, and before a batch's clock starts its possible "
            "victims are chosen (distinct, uniform among the items live at the batch's start), "
            "their extents copied into one sequential vector and the new sizes drawn; the live "
            "table is updated after the clock stops (looking items up in a table of 10^6 would "
            "add a cache miss per free that is the harness's, not the map's). "
            f"{r['ops']:,} operations per round; the figure is the median of 7 rounds."
        ),
        "",
        (
            f"Why the fill is held: {fill:.0%} is what C1's target promises (pads at most 1.05x "
            "the ideal). Left to itself the fill drifts with the length of the run, not with N: "
            "pads are only ever added, when a new item does not fit, so they follow the largest "
            "the data has ever been, which keeps growing as sizes wander. This benchmark let it "
            "drift up to commit 79030db, and its 10^3 map was 84% used after 140,000 steps and "
            "75% after 700,000, against 99.5% at 10^6: it compared an almost empty map with a "
            "full one."
        ),
        "",
        (
            "| live blocks | µs per operation | rounds (µs) | free extents | extents per item "
            "| pads | used |"
        ),
        "|---|---|---|---|---|---|---|",
    ]

    def line(x: dict[str, Any]) -> str:
        rounds = ", ".join(f"{v / 1e3:.2f}" for v in x["rounds_ns_per_op"])
        return (
            f"| {x['live_blocks']:,} | {x['ns_per_op'] / 1e3:.3f} | {rounds} | "
            f"{x['free_extents']:,} | {x['extents_per_item']:.2f} | {x['pads']:,} | "
            f"{x['used_fraction']:.1%} |"
        )

    out += [line(x) for x in r["results"]]
    results = r["results"]
    small, large = results[0], results[-1]
    read = r["read_ns"]
    out += [
        "",
        (
            "Where the growth comes from. With random victims, a free reads the list of a pad "
            "that has not been touched for long: from the cache at 10^3, from memory at 10^6. "
            f"A dependent read costs {read['cached']:.0f} ns from the cache and "
            f"{read['lists']:.0f} ns in a buffer of {read['list_bytes'] / MIB:.1f} MiB, the "
            f"size of the free extents' records at {large['live_blocks']:,} items, on this "
            "machine (benches/src/allocator.rs, `dependent_read_ns`), and "
            f"{read['memory']:.0f} ns in one of {read['memory_bytes'] / MIB:,.0f} MiB. The map "
            "fetches the lists a batch of extents needs together, and compacting a size class "
            "fetches the pad lists of the extents it moves ahead of time, but the first read of "
            "a free cannot be hidden. The Python extension, and so this benchmark, allocates "
            "through mimalloc, which keeps the lists closer together than the system allocator "
            "and backs them with huge pages (about 15% less per operation at 10^6). The work "
            "per operation also "
            "differs: how often an item has to be split over free fragments depends on how "
            "many fragments there are to choose from, so at 10^6 almost no item is split, while "
            f"at 10^3 and {fill:.0%} items average {small['extents_per_item']:.2f} extents."
        ),
        "",
        (
            "How much the growth depends on the fill, at the smallest and largest level "
            "(same harness):"
        ),
        "",
        (
            "| fill | µs per operation, smallest | extents per item | µs per operation, largest "
            "| extents per item | growth |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for other in [{"fill": fill, "results": [small, large]}, *r["other_fills"]]:
        a, b = other["results"]
        out.append(
            f"| {other['fill']:.0%} | {a['ns_per_op'] / 1e3:.3f} ({a['live_blocks']:,} items) "
            f"| {a['extents_per_item']:.2f} | {b['ns_per_op'] / 1e3:.3f} "
            f"({b['live_blocks']:,} items) | {b['extents_per_item']:.2f} "
            f"| {b['ns_per_op'] / a['ns_per_op']:.2f}x |"
        )
    out += [
        "",
        (
            "At a lower fill the small map splits fewer items, so its operations are cheaper "
            "and the growth is mostly the cache miss above; at a higher fill both levels split "
            "more. The target row uses the fill C1 promises; the others are shown so that the "
            "growth is not read as independent of it."
        ),
    ]
    return out + [""]


def p4(r: dict[str, Any]) -> list[str]:
    small, large = r["small"], r["large"]

    def line(x: dict[str, Any]) -> str:
        rounds = ", ".join(f"{t / r['probes'] * 1e6:.0f}" for t in x["rounds_s"])
        return (
            f"| {x['keys']:,} | {x['item_bytes']:,} B | {x['pads']} | {x['fill']:.0%} "
            f"| {x['fill_s']:.2f} s | {x['per_put_s'] * 1e6:.1f} µs "
            f"| {x['median_per_put_s'] * 1e6:.1f} µs ({rounds}) "
            f"| {x['flush_per_put_s'] * 1e6:.1f} µs |"
        )

    return [
        "### P4 index scaling",
        "",
        (
            "Two `memory://` stores (no disk, no network: anthill's own work) holding the same "
            f"bytes in the same pads, one in {large['keys'] / (1 - r['removed']):,.0f} items of "
            f"{large['item_bytes'] // 1024} KiB and one in "
            f"{small['keys'] / (1 - r['removed']):,.0f} items of "
            f"{small['item_bytes'] // 1024:,} KiB, each filled through `store_item_async` in "
            "`asyncio.gather` batches and flushed (every pad written). Then a random "
            f"{r['removed']:.0%} of the items is removed, which leaves holes in the pads. The "
            f"timed part is {r['rounds']} rounds of a plain loop of {r['probes']:,} "
            "`store_item` calls with new 1 KiB keys, alternating between the two stores (so "
            "that load from elsewhere on a shared machine falls on both alike), which land in "
            "those holes (the pad count "
            "is checked not to grow): they commit through the log and leave existing pads "
            "dirty, as small puts into a long-lived store do. After each round, untimed, "
            "`flush()` writes the dirty pads back; its time per put is shown beside (it "
            "depends on how many pads the holes are spread over, not on the index). The figure "
            "is the best round (load from elsewhere on a shared machine only adds time); the "
            "median is shown beside."
        ),
        "",
        (
            "| keys stored | item size | pads | pad fill | fill time | per put, best round "
            "| median (rounds) | flush afterwards, per put |"
        ),
        "|---|---|---|---|---|---|---|---|",
        line(small),
        line(large),
        "",
    ]


def p5(r: dict[str, Any]) -> list[str]:
    puts = r["puts"]
    data_bytes = puts * r["item_bytes"]
    out = [
        "### P5 small items",
        "",
        (
            f"{puts:,} puts of {r['item_bytes']} B into a fresh local folder store (4 MiB pads), "
            f"in a sync loop and in `asyncio.gather` batches of {r['batch']}, against diskcache "
            "(its defaults: SQLite, WAL, no fsync per set) and SlateDB (on the same folder through "
            "its `file:///` object store; a sequential loop of `await db.put`, with and without an "
            "`await db.flush()` after each put, which makes the put durable as anthill's is; a "
            "`flush()` ends each round of both) on the same disk. anthill's speed is measured "
            "on a plain `file://` store. Each contender keeps one store open and puts in "
            f"{r['rounds']} rounds of a {r['rounds']}th of the items; within a round the "
            "contenders take turns, in an order that rotates from round to round, so that "
            "load from elsewhere on a shared machine falls on all alike; a rate is the "
            "best round's, as load from elsewhere only adds time (beside it the median "
            "round's; time: all rounds). anthill's `flush()` after its last round, which "
            "writes the pads back, is timed apart (not part of the speed). The counts come from a second run on "
            "`sim+file://…` (no latency, failures or price: the same folder with every backend "
            "call counted), from the first put to the end of `close()`, so they include the "
            "write-back. Write requests are `put` + `reserve` + `durable_put` calls (pads, log "
            "objects and checkpoints alike); bytes are their payloads, sealed. On `sim+file://` a "
            "log object is created by `reserve` + `verify` (the sim hides the folder's one-call "
            "path) and pads are reserved by a call: its call counts are those of an object "
            "store, and its times (shown) are not the speed. A small put on a folder creates "
            "one file (its log object), so the table also shows how fast the same disk creates "
            "1 KiB files in a plain loop: on ext4 without a journal, creating a file skips one "
            "by one the inodes freed in the last minutes, so that rate falls while other "
            "processes delete many files. Every case's folder is removed when all are done, "
            "not between cases, so that no case pays for the files of the one before."
        ),
        "",
        "| | time | puts/s, best round | median round | write-back afterwards |",
        "|---|---|---|---|---|",
        (
            f"| diskcache (sync loop) | {r['diskcache']['seconds']:.2f} s "
            f"| {r['diskcache']['puts_per_s']:,.0f} | {r['diskcache']['median_puts_per_s']:,.0f} | — |"
        ),
        (
            f"| a new 1 KiB file per put (open, write, close) | {r['files']['seconds']:.2f} s "
            f"| {r['files']['puts_per_s']:,.0f} | {r['files']['median_puts_per_s']:,.0f} | — |"
        ),
        (
            f"| SlateDB put (sequential) | {r['slatedb_put']['seconds']:.2f} s "
            f"| {r['slatedb_put']['puts_per_s']:,.0f} | {r['slatedb_put']['median_puts_per_s']:,.0f} | — |"
        ),
        (
            f"| SlateDB put + flush (sequential) | {r['slatedb_put_flush']['seconds']:.2f} s "
            f"| {r['slatedb_put_flush']['puts_per_s']:,.0f} | {r['slatedb_put_flush']['median_puts_per_s']:,.0f} | — |"
        ),
    ]
    for label, name in (("gather(100)", "anthill_gathered"), ("sync loop", "anthill_sync")):
        x = r[name]
        out.append(
            f"| anthill, {label} | {x['seconds']:.2f} s | {x['puts_per_s']:,.0f} "
            f"| {x['median_puts_per_s']:,.0f} "
            f"| `flush()` {ms(x['flush_s'])} for {x['unflushed_after_puts'] / MIB:.1f} MiB "
            "left in the log |"
        )
    out += [
        "",
        (
            "Backend calls on `sim+file://`, from the first put to the end of `close()` (calls, "
            "and in brackets the part made during the puts):"
        ),
        "",
        (
            "| | put | reserve | durable_put | verify | get | list | delete "
            "| bytes written (during the puts) | per put | amplification | time of the puts |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kinds = ("put", "reserve", "durable_put", "verify", "get", "list", "delete")
    for label, name in (
        ("gather(100)", "anthill_gathered_counted"),
        ("sync loop", "anthill_sync_counted"),
    ):
        x = r[name]
        calls = " | ".join(
            f"{x['calls'][k][0]:,} ({x['calls_during_puts'][k][0]:,})" for k in kinds
        )
        out.append(
            f"| anthill, {label} | {calls} | {x['bytes_written'] / MIB:,.1f} MiB "
            f"({x['bytes_written_during_puts'] / MIB:,.1f} MiB) "
            f"| {x['bytes_per_put'] / 1024:,.2f} KiB | {x['bytes_written'] / data_bytes:,.2f} "
            f"| {x['seconds']:.2f} s |"
        )
    return out + [""]


def p6(r: dict[str, Any]) -> list[str]:
    return [
        "### P6 memory",
        "",
        (
            f"A process of its own makes {r['input_bytes'] // MIB:,} MiB with `os.urandom`, opens a "
            "fresh local folder store and puts the `bytes` object; the peak is `ru_maxrss`. The "
            "bound is the input plus 40 pads plus 50 MiB, taken as the whole process's peak "
            "(interpreter included)."
        ),
        "",
        f"- interpreter and anthill loaded, before the data: {r['baseline_rss'] / MIB:,.0f} MiB",
        f"- just before the put: {r['rss_before_put'] / MIB:,.0f} MiB",
        (
            f"- peak: {r['peak_rss'] / MIB:,.0f} MiB, so the put itself added up to "
            f"{(r['peak_rss'] - r['rss_before_put']) / MIB:,.0f} MiB "
            f"({(r['peak_rss'] - r['rss_before_put']) / r['pad_size']:.1f} pads)"
        ),
        f"- bound: {r['bound'] / MIB:,.0f} MiB",
        "",
    ]


def p8(r: dict[str, Any]) -> list[str]:
    large = r["large_bytes"] // MIB
    same = r["same_bytes"]
    return [
        "### P8 streaming",
        "",
        (
            f"A {large:,} MiB file, sparse but for a marked 4 KiB every 64 MiB, is put with "
            "`store_file` into a fresh `sim+file://` folder store (no simulated latency), then "
            "fetched back with `fetch_file`; each call runs in a process of its own, after a "
            "warm-up put and get of 8 MiB, and its figure is the peak `ru_maxrss` above the "
            "peak before the call. Then a 1 KiB `fetch_range` in the middle of the item, in a "
            "fresh process, counts the backend's reads. Throughput: the same "
            f"{same // MIB:,} MiB of random data put by `store_item(bytes)` and by "
            "`store_file(path)` (file in the page cache), and fetched by `fetch_item` and by "
            "`fetch_file(path)`, each into a fresh store, medians of 3."
        ),
        "",
        (
            f"- store_file: baseline {r['put_baseline'] / MIB:,.0f} MiB, peak "
            f"{r['put_peak'] / MIB:,.0f} MiB"
        ),
        (
            f"- fetch_file: baseline {r['get_baseline'] / MIB:,.0f} MiB, peak "
            f"{r['get_peak'] / MIB:,.0f} MiB; the marked places read back intact: "
            f"{r['restored_ok']}"
        ),
        f"- reads of the 1 KiB range: {r['range_gets']}",
        (
            f"- store_item {mib_s(same, r['store_item_s'])}, store_file "
            f"{mib_s(same, r['store_file_s'])}; fetch_item {mib_s(same, r['fetch_item_s'])}, "
            f"fetch_file {mib_s(same, r['fetch_file_s'])}; "
            f"store_item(path.read_bytes()) {mib_s(same, r['file_store_item_s'])}, "
            f"path.write_bytes(fetch_item()) {mib_s(same, r['fetch_item_file_s'])}"
        ),
        "",
    ]


def c1(r: dict[str, Any]) -> list[str]:
    return [
        "### C1 cost",
        "",
        (
            f"On `sim+memory://` with 4 MiB pads (Rust API): {r['items_live'] // 2:,} items of "
            "log-uniform sizes (100 B .. 1 MiB); a random half removed and new data (new sizes) "
            "stored under those keys; then as many new items again as the workload started with. "
            "Puts and "
            "removes run 100 at a time. Pads reserved is the sim's count of successful `reserve` "
            "calls; the ideal is ceil(live bytes / pad size); the pad-per-key count, "
            "sum(ceil(size / pad size)), is what rounding each item up to whole pads would pay."
        ),
        "",
        (
            f"- live: {r['items_live']:,} items, {r['live_bytes'] / MIB:,.1f} MiB "
            f"(the map's used space: {r['used_space'] / MIB:,.1f} MiB; free: "
            f"{r['free_space'] / MIB:,.1f} MiB)"
        ),
        (
            f"- pads reserved: {r['pads_after_fill']:,} after the first "
            f"{r['items_live'] // 2:,} items, "
            f"{r['pads_after_replace']:,} after the replacements, {r['pads_reserved']:,} at the end "
            f"({r['pads_in_map']:,} in the map)"
        ),
        f"- ideal: {r['ideal_pads']:,}; pad per key: {r['pad_per_key_pads']:,}",
        (
            f"- backend bytes written: {r['backend_bytes_written'] / MIB:,.0f} MiB for "
            f"{r['live_bytes'] / MIB:,.0f} MiB live ({r['pad_put_calls']:,} pad and index puts); "
            f"{r['seconds']:.0f} s"
        ),
        "",
    ]


def c2(r: dict[str, Any]) -> list[str]:
    lines = [
        "### C2 compaction",
        "",
        (
            "On `sim+memory://` (Python API), for each mix of sizes: items stored, every "
            "item whose number is not a multiple of 5 removed, then one `compact()`. Pads "
            "in use is the store's pad count after it; the ideal is ceil(live bytes / pad "
            "size). Every surviving item is read back and the store verified (the row "
            "fails otherwise). Bytes moved are the bytes copied to new places (small items "
            "whole, large ones only their pieces in the emptied pads)."
        ),
        "",
    ]
    for mix in r["mixes"]:
        lines.append(
            f"- {mix['mix']} ({mix['sizes']}; {mix['items']:,} items, "
            f"{mix['pad_size'] // 1024} KiB pads): live {mix['items_live']:,} items, "
            f"{mix['live_bytes'] / MIB:,.2f} MiB; pads {mix['pads_before']:,} before, "
            f"{mix['pads_after']:,} after (ideal {mix['ideal_pads']:,}; "
            f"{mix['pads_deleted']:,} deleted, counted by the sim); moved "
            f"{mix['items_moved']:,} items, {mix['bytes_moved'] / MIB:,.2f} MiB, in "
            f"{mix['seconds']:.2f} s; verify {'ok' if mix['verified_ok'] else 'NOT ok'}"
        )
    lines.append("")
    return lines


def z1(r: dict[str, Any]) -> list[str]:
    a, local = r["anthill"], r["local_store"]
    size = r["array_bytes"]
    return [
        "### Z1 zarr",
        "",
        (
            f"A 1-D float64 array of {r['chunks']:,} chunks of {r['chunk_bytes'] // 1024} KiB "
            f"({size / MIB:,.1f} MiB, uncompressed) written with one `array[:] = data` and read "
            "back with one `array[:]` from a freshly opened array, each into a fresh folder on "
            f"the same disk: through `anthill.zarr.AnthillStore` on a folder store with "
            f"{a['pad_size'] // MIB} MiB pads (`sim+file://…` without latency, failures or "
            "price, so that backend calls are counted), and through zarr's `LocalStore`, one "
            f"file per chunk. zarr {r['zarr_version']} stores and fetches "
            f"{r['concurrency']} chunks at a time. Median of three rounds; the ratio is "
            "LocalStore's time over anthill's (above 1: anthill is faster)."
        ),
        "",
        "| | write | read | objects on the disk |",
        "|---|---|---|---|",
        (
            f"| anthill | {ms(a['write_s'])} ({mib_s(size, a['write_s'])}) "
            f"| {ms(a['read_s'])} ({mib_s(size, a['read_s'])}) "
            f"| {a['pads']:,} pads (ideal ceil({a['item_bytes']:,} B / pad) = {a['ideal_pads']:,}) |"
        ),
        (
            f"| zarr LocalStore | {ms(local['write_s'])} ({mib_s(size, local['write_s'])}) "
            f"| {ms(local['read_s'])} ({mib_s(size, local['read_s'])}) "
            f"| {local['files']:,} files |"
        ),
        "",
        (
            f"anthill's backend calls in the last round, for {a['items']:,} items of "
            f"{size / MIB:,.1f} MiB: {a['write_requests']:,} write requests (pad and index "
            f"`put` + `reserve`) moving {a['bytes_written'] / MIB:,.0f} MiB, and "
            f"{a['get_requests']:,} reads moving {a['bytes_read'] / MIB:,.0f} MiB (a pad is "
            "written whole and read whole, whatever part of it a chunk occupies)."
        ),
        "",
    ]


def p7(r: dict[str, Any]) -> list[str]:
    puts = r["puts"]
    kinds = ("put", "reserve", "durable_put", "verify", "get", "list", "delete")
    out = [
        "### P7 small puts on S3",
        "",
        (
            f"A sync loop of {puts:,} puts of {r['item_bytes']} B into a fresh store "
            f"({r['pad_size'] // MIB} MiB pads) on a local Garage cluster of 3 nodes "
            "(scripts/garage.sh), through `sim+s3://…`: the sim adds no latency and counts "
            "anthill's object calls and their payload bytes. Garage's own counters (the "
            "`/metrics` of the node anthill talks to) count the HTTP requests it served by S3 "
            "operation, the writer lease's included, which the sim does not see. Counted from "
            "after the open (the store's creation left out) to the end of the loop, and apart "
            "from there to the end of `close()`, which writes back the pads the loop left "
            f"dirty ({r['unflushed_after_loop'] / 1024:,.0f} KiB). The loop took "
            f"{r['loop_s']:.2f} s ({r['loop_s'] / puts * 1e3:.1f} ms per put)."
        ),
        "",
        "| anthill's calls (sim) | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for label, x in (("loop, per put", r["sim_loop"]), ("close", r["sim_close"])):
        per = puts if label.startswith("loop") else 1
        cells = " | ".join(
            f"{x[k][0] / per:.2f} ({x[k][1] / per / 1024:,.1f} KiB)"
            if per > 1
            else f"{x[k][0]:,} ({x[k][1] / 1024:,.1f} KiB)"
            for k in kinds
        )
        out.append(f"| {label} | {cells} |")
    garage = {**r["garage_close"], **r["garage_loop"]}
    names = sorted(name for name in garage if not name.endswith(" s"))
    if not names:
        names = ["(Garage's counters were not reachable)"]
    out += [
        "",
        "| Garage's requests | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| loop, per put | "
        + " | ".join(f"{r['garage_loop'].get(n, 0) / puts:.2f}" for n in names)
        + " |",
        "| close | " + " | ".join(f"{r['garage_close'].get(n, 0):,}" for n in names) + " |",
        "| loop, Garage's time per request | "
        + " | ".join(
            f"{loop[f'{n} s'] / loop[n] * 1e3:.1f} ms" if loop.get(n) else "—"
            for n in names
            for loop in [r["garage_loop"]]
        )
        + " |",
        "",
        (
            "What one small put sends (src/journal/append.rs `create_log_object`, "
            "src/pad_store/object.rs, src/pad_store/lease/): its log object, created by a "
            "`reserve`, which on a service that ignores conditional writes (Garage) is a "
            "`HEAD` (is the name free?) and then the `PUT` of about 1.1 KiB. Nothing else: "
            "the writer lease is kept through the loop and checked by the fence's local clocks "
            "(no read of the lease object; see `HeldLease::check`), and a create that answered "
            "success is not read back. Where conditional writes are honoured (AWS S3, MinIO, "
            "R2) the `HEAD` is not sent either. The few extra requests of the loop are the "
            "first put's (taking the lease, reserving the pad) and the lease's renewal. A "
            "put's requests go one after another, so its time is about the sum of their times "
            "on the server."
        ),
        "",
    ]
    if "throughput" in r:
        out += p7_throughput(r["throughput"])
    return out


def p7_throughput(t: dict[str, Any]) -> list[str]:
    size, puts = t["large_bytes"], t["small_puts"]

    def requests(x: dict[str, Any], ops: int) -> str:
        counts = ", ".join(f"{n} {c / ops:,.2f}" for n, c in sorted(x.items()) if " " not in n)
        return counts or "—"

    def cpu(x: dict[str, Any]) -> str:
        if "client cpu s" not in x:
            return "—"
        return f"{x['client cpu s']:.1f} s + Garage {x['garage cpu s']:.1f} s"

    out = [
        "#### anthill against obstore on the same bucket",
        "",
        (
            f"The same Garage cluster and bucket, fresh prefixes: one item of {size // MIB} MiB "
            "(random bytes) put and got back, by anthill (`store_item` / `fetch_item`, a fresh "
            "store with default options: 4 MiB pads, 20 uploads and 20 downloads in flight) "
            "and by obstore's `S3Store` (`put`: its default multipart upload, 12 parts in "
            "flight; `get(...).bytes()`: one GET); then "
            f"{puts:,} sequential puts of {t['item_bytes']} B (after one first put each). "
            "3 runs, the sides alternating; the table gives the median and each run. "
            "Requests are Garage's counts (the node both talk to) in the last run, per "
            "operation (per put for the small puts); CPU is the seconds the client process "
            "and the 3 Garage nodes used in that run, on this machine's cores."
        ),
        "",
        (
            "| case | anthill (runs) | obstore (runs) | anthill's requests "
            "| obstore's requests | CPU, anthill | CPU, obstore |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    runs = t["runs"]
    for direction in ("put", "get"):
        ours = [size / x[f"{direction}_s"] / MIB for x in runs["anthill_large"]]
        peer = [size / x[f"{direction}_s"] / MIB for x in runs["obstore_large"]]
        out.append(
            f"| {direction} {size // MIB} MiB | {size / t[f'anthill_{direction}_s'] / MIB:,.0f} "
            f"MiB/s ({', '.join(f'{v:,.0f}' for v in ours)}) "
            f"| {size / t[f'obstore_{direction}_s'] / MIB:,.0f} MiB/s "
            f"({', '.join(f'{v:,.0f}' for v in peer)}) "
            f"| {requests(t[f'anthill_{direction}_req'], 1)} "
            f"| {requests(t[f'obstore_{direction}_req'], 1)} "
            f"| {cpu(t[f'anthill_{direction}_req'])} | {cpu(t[f'obstore_{direction}_req'])} |"
        )
    ours = [puts / x["s"] for x in runs["anthill_small"]]
    peer = [puts / x["s"] for x in runs["obstore_small"]]
    out += [
        (
            f"| {puts:,} puts of 1 KiB | {puts / t['anthill_small_s']:,.1f} puts/s "
            f"({', '.join(f'{v:,.1f}' for v in ours)}) "
            f"| {puts / t['obstore_small_s']:,.1f} puts/s "
            f"({', '.join(f'{v:,.1f}' for v in peer)}) "
            f"| {requests(t['anthill_small_req'], puts)} "
            f"| {requests(t['obstore_small_req'], puts)} "
            f"| {cpu(t['anthill_small_req'])} | {cpu(t['obstore_small_req'])} |"
        ),
        "",
        (
            "What each side sends: anthill's large put is one `PUT` per 4 MiB pad, 20 at a "
            "time (the answered `PUT` is the pad's commit: nothing reads it back, see "
            "docs/s3.md), and a few index log writes, each a `HEAD` then a `PUT` on Garage "
            "(the pads are created by their first write, see docs/architecture.md); its get "
            "one `GET` per pad, 20 at a time, each opened and "
            "checked on another core. obstore's put is a multipart upload of 5 MiB parts, "
            "its get one streamed `GET`. A small put of anthill is its log object (a `HEAD` "
            "then a `PUT` on Garage, which ignores conditional writes), an obstore put one "
            "`PUT`. The client and the three Garage nodes share this machine's cores (with "
            "whatever else runs on it), so the throughput follows how busy the machine is "
            "and the runs vary; the CPU columns say what each side cost the machine."
        ),
        "",
    ]
    return out


def p9(r: dict[str, Any]) -> list[str]:
    small, large = r["small_keys"], r["large_keys"]

    def runs(name: str) -> str:
        return ", ".join(f"{x:.3f}" for x in r["runs_s"][name])

    return [
        "### P9 open time",
        "",
        (
            f"Two local folder stores, of {small:,} and {large:,} items of 64 B, built once "
            "under the scratch folder (`kept/p9-<keys>`, kept between runs) through "
            "`store_item_async` in `asyncio.gather` batches, then flushed and closed, so each "
            "holds a checkpoint and the log after it. Each run is a fresh process: `open` + "
            "`fetch_item` of one key timed inside it after `import anthill`, and apart the "
            "wall time of a whole `anthill get` process (interpreter start and import "
            f"included, alike for both). {r['runs']} runs of each, alternating between the "
            "stores; the figure is the median."
        ),
        "",
        "| run | open + fetch, s | `anthill get`, s |",
        "|---|---|---|",
        f"| {small:,} keys | {runs('small')} | {runs('small_cli')} |",
        f"| {large:,} keys | {runs('large')} | {runs('large_cli')} |",
        "",
        (
            "Where the time goes (docs/architecture.md, Opening a store): the map of used "
            "space is no longer built at open; what still grows with the keys is decoding "
            "the whole checkpoint into the index and replaying the log after it. A lazily "
            "read checkpoint (sealed sorted blocks, looked up by binary search) is the step "
            "that remains for the target."
        ),
        "",
    ]


SECTIONS: dict[str, Any] = {
    "P1": p1,
    "P2": None,  # needs the CPU reference: see sections()
    "P3": p3,
    "P4": p4,
    "P5": p5,
    "P6": p6,
    "P7": p7,
    "P8": p8,
    "P9": p9,
    "C1": c1,
    "C2": c2,
    "Z1": z1,
    **many_writers.SECTIONS,
    "Z2": z2_section,
    "G1": g1_section,
}


def sections(names: list[str], results: dict[str, dict[str, Any]]) -> list[str]:
    """The explanation and figures of the benchmarks ``names``, in that order."""
    out: list[str] = []
    for name in names:
        if name not in results:
            out += [f"### {name}", "", "Failed in this run: see the table.", ""]
        elif name == "P2":
            out += p2(results[name], results.get("cpu"))
        else:
            out += SECTIONS[name](results[name])
    return out


def details(results: dict[str, dict[str, Any]]) -> list[str]:
    return ["## How each row is measured", "", *sections(list(SECTIONS), results)]
