"""The results table's rows: the `Row` type, the formats of its figures, and
how the result of each P, C and Z1 benchmark becomes rows with a verdict.
The W rows are in many_writers.py, Z2 and G1 in peer_rows.py; suite.py
runs the benchmarks and writes the document."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


# --- the table ---------------------------------------------------------------


@dataclass
class Row:
    name: str
    figure: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.3g}"
        met = {True: "yes", False: "**no**", None: "n/a"}[self.met]
        return [self.name, self.figure, self.reference, ratio, self.target, met]


def failed_row(name: str, error: Exception) -> Row:
    reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else repr(error)
    return Row(name, f"failed: {reason}", "—", None, "—", False)


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


def rate(per_s: float, unit: str) -> str:
    return f"{per_s:,.0f} {unit}/s"


def mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


# --- the rows of each benchmark ----------------------------------------------


def p1_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["measured_s"] / r["bound_s"]
    return [
        Row(
            "P1 pipelining: put needing 64 new pads, sim 50 ms, 20/20 in flight",
            f"{seconds(r['measured_s'])} (median of {len(r['runs_s'])})",
            f"critical path {seconds(r['bound_s'])} (two-phase: {seconds(r['two_phase_s'])})",
            ratio,
            "≤ 1.15",
            ratio <= 1.15,
        )
    ]


def p2_rows(r: dict[str, Any]) -> list[Row]:
    size = r["bytes"]
    rows = []
    for direction in ("put", "get"):
        ours, peer = r[f"anthill_{direction}_s"], r[f"obstore_{direction}_s"]
        ratio = peer / ours  # throughput ratio
        rows.append(
            Row(
                f"P2 throughput: {direction} of {mib(size)}, local folder",
                f"{rate(size / ours / MIB, 'MiB')} ({seconds(ours)})",
                f"obstore LocalStore {rate(size / peer / MIB, 'MiB')} ({seconds(peer)})",
                ratio,
                "≥ 0.7",
                ratio >= 0.7,
            )
        )
    ours, peer = r["anthill_put_fsync_s"], r["obstore_put_fsync_s"]
    rows.append(
        Row(
            f"P2 throughput: put of {mib(size)}, durable (fsync) on both sides",
            f"fsync=True {rate(size / ours / MIB, 'MiB')} ({seconds(ours)})",
            f"obstore put + fsync {rate(size / peer / MIB, 'MiB')} ({seconds(peer)})",
            peer / ours,
            "none (reported)",
            None,
        )
    )
    return rows


def p3_rows(r: dict[str, Any]) -> list[Row]:
    by_live = {x["live_blocks"]: x["ns_per_op"] for x in r["results"]}
    worst_live, worst = max(by_live.items(), key=lambda kv: kv[1])
    smallest, largest = min(by_live), max(by_live)
    growth = by_live[largest] / by_live[smallest]
    listing = ", ".join(
        f"10^{round(math.log10(n))}: {ns / 1e3:.2f} µs" for n, ns in by_live.items()
    )
    return [
        Row(
            "P3 allocator: cost per allocate/free (worst of 10^3..10^6 live blocks)",
            f"{worst / 1e3:.2f} µs at 10^{round(math.log10(worst_live))} ({listing})",
            "budget 1 µs",
            worst / 1e3,
            "≤ 1",
            worst <= 1e3,
        ),
        Row(
            f"P3 allocator: growth from 10^3 to 10^6 live blocks ({r['fill']:.0%} full)",
            f"{by_live[largest] / 1e3:.2f} µs/op at 10^{round(math.log10(largest))}",
            f"{by_live[smallest] / 1e3:.2f} µs/op at 10^{round(math.log10(smallest))}",
            growth,
            "≤ 1.5",
            growth <= 1.5,
        ),
    ]


def p4_rows(r: dict[str, Any]) -> list[Row]:
    small, large = r["small"], r["large"]
    ratio = large["per_put_s"] / small["per_put_s"]
    return [
        Row(
            f"P4 index scaling: sync loop of 1 KiB puts into holes of {large['pads']} pads "
            f"{large['fill']:.0%} full, {large['keys']:,} keys stored",
            f"{seconds(large['per_put_s'])}/put",
            f"{seconds(small['per_put_s'])}/put with {small['keys']:,} keys, same pads and fill",
            ratio,
            "≤ 1.2",
            ratio <= 1.2,
        )
    ]


def p5_rows(r: dict[str, Any]) -> list[Row]:
    disk = r["diskcache"]["puts_per_s"]
    slate, slate_flush = r["slatedb_put"]["puts_per_s"], r["slatedb_put_flush"]["puts_per_s"]
    gathered, sync = r["anthill_gathered"], r["anthill_sync"]
    gathered_n, sync_n = r["anthill_gathered_counted"], r["anthill_sync_counted"]
    puts = f"{r['puts']:,}"
    data = f"{mib(r['puts'] * r['item_bytes'])} of data"

    def speed(label: str, x: dict[str, Any], peer: str, peer_rate: float, bound: float) -> Row:
        ratio = x["puts_per_s"] / peer_rate
        return Row(
            f"P5 small items: {puts} puts of 1 KiB, {label}",
            rate(x["puts_per_s"], "puts"),
            f"{peer} {rate(peer_rate, 'puts')}",
            ratio,
            f"≥ {bound:g}",
            ratio >= bound,
        )

    def requests(label: str, x: dict[str, Any], bound: float) -> Row:
        return Row(
            f"P5 write requests per put, {label}, write-back included",
            f"{x['write_requests']:,} put+reserve+durable_put calls / {puts} puts",
            f"target {bound:g}",
            x["write_requests_per_put"],
            f"≤ {bound:g}",
            x["write_requests_per_put"] <= bound,
        )

    bytes_per_put = sync_n["bytes_per_put"] / 1024
    return [
        speed("gather(100)", gathered, "diskcache", disk, 1.5),
        speed("sync loop", sync, "diskcache", disk, 0.5),
        speed("sync loop", sync, "SlateDB put + flush", slate_flush, 2),
        speed("sync loop", sync, "SlateDB put", slate, 1),
        Row(
            f"P5 small items: {puts} puts of 1 KiB, sync loop, against the disk's file creation",
            rate(sync["puts_per_s"], "puts"),
            f"a new 1 KiB file per put {rate(r['files']['puts_per_s'], 'files')}",
            sync["puts_per_s"] / r["files"]["puts_per_s"],
            "none (reported)",
            None,
        ),
        Row(
            "P5 bytes written per 1 KiB put, sync loop, write-back included",
            f"{bytes_per_put:.2f} KiB/put ({mib(sync_n['bytes_written'])} for {puts} puts)",
            "target 4 KiB",
            bytes_per_put,
            "≤ 4",
            bytes_per_put <= 4,
        ),
        requests("gather(100)", gathered_n, 0.1),
        requests("sync loop", sync_n, 1.1),
        Row(
            "P5 write amplification, gather(100), write-back included",
            f"{mib(gathered_n['bytes_written'])} written to the backend",
            data,
            gathered_n["write_amplification"],
            "≤ 3",
            gathered_n["write_amplification"] <= 3,
        ),
        Row(
            "P5 write amplification, sync loop, write-back included",
            f"{mib(sync_n['bytes_written'])} written to the backend",
            data,
            sync_n["write_amplification"],
            "none (reported)",
            None,
        ),
    ]


def p7_rows(r: dict[str, Any]) -> list[Row]:
    puts = r["puts"]
    writes = ("put", "reserve", "durable_put")
    loop = r["sim_loop"]
    put_requests = sum(loop[k][0] for k in writes) / puts
    bytes_per_put = sum(loop[k][1] for k in writes) / puts
    other = sum(loop[k][0] for k in ("verify", "get", "list", "delete")) / puts
    garage = r["garage_loop"]
    garage_puts = garage.get("PutObject", 0) / puts
    # Request counts, not the seconds spent on them ("<operation> s").
    garage_other = sum(v for k, v in garage.items() if k != "PutObject" and " " not in k) / puts
    saw_puts = f"Garage saw {garage_puts:.2f} PutObject" if garage else "no Garage counters"
    saw_other = f"Garage saw {garage_other:.2f} non-PUT" if garage else "no Garage counters"
    return [
        Row(
            f"P7 S3 (Garage, 3 nodes): PUT requests per 1 KiB sync put, loop of {puts:,}",
            f"{put_requests:.2f} put+reserve+durable_put ({saw_puts})",
            "target 1",
            put_requests,
            "≤ 1.1",
            put_requests <= 1.1,
        ),
        Row(
            "P7 S3 (Garage, 3 nodes): bytes per 1 KiB sync put, loop",
            f"{bytes_per_put / 1024:.2f} KiB/put",
            "target a few KiB",
            bytes_per_put / 1024,
            "≤ 4",
            bytes_per_put / 1024 <= 4,
        ),
        Row(
            "P7 S3 (Garage, 3 nodes): other requests per 1 KiB sync put, loop",
            f"{other:.2f} verify+get+list+delete ({saw_other})",
            "—",
            other,
            "none (reported)",
            None,
        ),
        *p7_throughput_rows(r["throughput"]),
    ]


def p7_throughput_rows(t: dict[str, Any]) -> list[Row]:
    """anthill against obstore's S3Store on the same Garage bucket."""

    def per_op(requests: dict[str, Any], ops: int) -> str:
        counts = {n: c for n, c in requests.items() if " " not in n}
        total = sum(counts.values()) / ops
        parts = ", ".join(f"{n} {c / ops:.3g}" for n, c in sorted(counts.items()))
        return f"{total:.3g} requests/op ({parts})"

    size = t["large_bytes"]
    rows = []
    for direction in ("put", "get"):
        ours, peer = t[f"anthill_{direction}_s"], t[f"obstore_{direction}_s"]
        ratio = peer / ours
        rows.append(
            Row(
                f"P7 S3 (Garage, 3 nodes): {direction} of {mib(size)}, median of 3",
                f"{rate(size / ours / MIB, 'MiB')}; {per_op(t[f'anthill_{direction}_req'], 1)}",
                f"obstore S3Store {rate(size / peer / MIB, 'MiB')}; "
                f"{per_op(t[f'obstore_{direction}_req'], 1)}",
                ratio,
                "≥ 0.9",
                ratio >= 0.9,
            )
        )
    puts = t["small_puts"]
    ours, peer = t["anthill_small_s"], t["obstore_small_s"]
    ratio = peer / ours
    rows.append(
        Row(
            f"P7 S3 (Garage, 3 nodes): {puts:,} sequential 1 KiB puts, median of 3",
            f"{rate(puts / ours, 'puts')}; {per_op(t['anthill_small_req'], puts)}",
            f"obstore S3Store {rate(puts / peer, 'puts')}; {per_op(t['obstore_small_req'], puts)}",
            ratio,
            "≥ 0.5",
            ratio >= 0.5,
        )
    )
    return rows


def p6_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["peak_rss"] / r["bound"]
    return [
        Row(
            f"P6 memory: peak RSS of a {mib(r['input_bytes'])} put from bytes",
            f"{mib(r['peak_rss'])} (before the put: {mib(r['rss_before_put'])})",
            f"input + 40 pads + 50 MiB = {mib(r['bound'])}",
            ratio,
            "≤ 1",
            ratio <= 1,
        )
    ]


def p8_rows(r: dict[str, Any]) -> list[Row]:
    size = mib(r["large_bytes"])
    rows = []
    for what in ("put", "get"):
        above = r[f"{what}_peak"] - r[f"{what}_baseline"]
        call = "store_file" if what == "put" else "fetch_file"
        rows.append(
            Row(
                f"P8 streaming: peak RSS of {call} of a {size} file, above the baseline",
                f"{mib(above)} (baseline {mib(r[f'{what}_baseline'])})",
                "256 MiB",
                above / (256 * 2**20),
                "≤ 1",
                above <= 256 * 2**20 and (what == "put" or bool(r["restored_ok"])),
            )
        )
    for streamed, in_memory, label in (
        ("store_file", "file_store_item", "store_item(path.read_bytes())"),
        ("fetch_file", "fetch_item_file", "path.write_bytes(fetch_item())"),
    ):
        ratio = r[f"{in_memory}_s"] / r[f"{streamed}_s"]
        rows.append(
            Row(
                f"P8 streaming: {streamed} throughput / {label}, same {mib(r['same_bytes'])}",
                f"{seconds(r[f'{streamed}_s'])} vs {seconds(r[f'{in_memory}_s'])}",
                "≥ 0.8x",
                ratio,
                "≥ 0.8",
                ratio >= 0.8,
            )
        )
    for streamed, in_memory in (("store_file", "store_item"), ("fetch_file", "fetch_item")):
        ratio = r[f"{in_memory}_s"] / r[f"{streamed}_s"]
        rows.append(
            Row(
                f"P8 streaming: {streamed} throughput / {in_memory} from/to bytes already "
                f"in memory, same {mib(r['same_bytes'])}",
                f"{seconds(r[f'{streamed}_s'])} vs {seconds(r[f'{in_memory}_s'])}",
                "none (reported)",
                ratio,
                "reported",
                None,
            )
        )
    rows.append(
        Row(
            f"P8 streaming: backend reads of a 1 KiB fetch_range in a {size} item",
            str(r["range_gets"]),
            "≤ 2",
            r["range_gets"] / 2,
            "≤ 1",
            r["range_gets"] <= 2,
        )
    )
    return rows


def c1_rows(r: dict[str, Any]) -> list[Row]:
    ratio = r["pads_reserved"] / r["ideal_pads"]
    per_key = r["pad_per_key_pads"]
    return [
        Row(
            f"C1 cost: churn, {r['items_live']:,} live items, 4 MiB pads",
            f"{r['pads_reserved']:,} pads reserved",
            f"ideal ceil(live bytes / pad) = {r['ideal_pads']:,} "
            f"(pad per key: {per_key:,}, {per_key / r['ideal_pads']:.1f}x)",
            ratio,
            "≤ 1.05",
            ratio <= 1.05,
        )
    ]


def c2_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for mix in r["mixes"]:
        ratio = mix["pads_after"] / mix["ideal_pads"]
        rows.append(
            Row(
                f"C2 compaction, {mix['mix']}: {mix['items']:,} items, "
                f"{100 - 100 * mix['items_live'] // mix['items']}% removed, "
                f"{mix['pad_size'] // 1024} KiB pads",
                f"{mix['pads_after']:,} pads after compact() (before: {mix['pads_before']:,})",
                f"ideal ceil(live bytes / pad) = {mix['ideal_pads']:,}",
                ratio,
                "≤ 1.1",
                ratio <= 1.1 and mix["verified_ok"],
            )
        )
    return rows


def z1_rows(r: dict[str, Any]) -> list[Row]:
    ours, peer = r["anthill"], r["local_store"]
    size, chunks = r["array_bytes"], f"{r['chunks']:,}"
    rows = []
    for direction in ("write", "read"):
        ours_s, peer_s = ours[f"{direction}_s"], peer[f"{direction}_s"]
        rows.append(
            Row(
                f"Z1 zarr: {direction} of {chunks} chunks of 16 KiB, local folder",
                f"{rate(size / ours_s / MIB, 'MiB')} ({seconds(ours_s)})",
                f"zarr LocalStore {rate(size / peer_s / MIB, 'MiB')} ({seconds(peer_s)})",
                peer_s / ours_s,
                "none (reported)",
                None,
            )
        )
    rows.append(
        Row(
            f"Z1 zarr: objects stored for {chunks} chunks",
            f"{ours['pads']:,} pads of {mib(ours['pad_size'])}",
            f"ideal ceil(bytes / pad) = {ours['ideal_pads']:,}; LocalStore {peer['files']:,} files",
            ours["pads"] / ours["ideal_pads"],
            "none (reported)",
            None,
        )
    )
    return rows


def p9_rows(r: dict[str, Any]) -> list[Row]:
    small, large = f"{r['small_keys']:,}", f"{r['large_keys']:,}"
    rows = []
    for what, suffix, target in (
        ("open + fetch one item (in process)", "", 2.0),
        ("`anthill get` of one item (whole process)", "_cli", 2.0),
    ):
        ours, base = r[f"large{suffix}_s"], r[f"small{suffix}_s"]
        rows.append(
            Row(
                f"P9 open: {what}, {large} keys of 64 B, local folder",
                seconds(ours),
                f"the same with {small} keys {seconds(base)}",
                ours / base,
                f"≤ {target:g}",
                ours / base <= target,
            )
        )
    first = r.get("first_s", {}).get("large")
    if first is not None:
        rows.append(
            Row(
                f"P9 open: first open + fetch, {large} keys, no local index cache yet",
                seconds(first),
                "loads the whole index and writes the cache",
                None,
                "reported",
                None,
            )
        )
    rows.append(
        Row(
            f"P9 open: open + fetch one item, {large} keys, absolute",
            seconds(r["large_s"]),
            "target 0.2 s",
            r["large_s"] / 0.2,
            "< 1",
            r["large_s"] < 0.2,
        )
    )
    return rows
