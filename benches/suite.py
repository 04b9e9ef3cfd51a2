"""The benchmark suite of anthill (issue 6): runs every benchmark, each in a
process of its own, and rewrites docs/benchmarks.md with the machine it ran
on and one table of ratios measured in this run.

Run it through `bash scripts/bench.sh`, which builds what it needs first
(the optimised Python extension, the Rust benchmark binary), installs the
peers (obstore, diskcache, zarr, slatedb, dask, icechunk) and starts a Garage
cluster for P7, G1, W3 and W4. `--quick` runs every benchmark small, to check the suite works; its
figures are not the targets' figures. `--only Z1,P5` runs only the
benchmarks named and replaces just their rows and sections in the existing
docs/benchmarks.md, noting when they were run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import many_writers

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
RUST_BENCH = BENCHES / "target" / "release" / "anthill-bench"
PYTHON_BENCHES = BENCHES / "python"
#: The release build of anthill the Python benchmarks import (scripts/bench.sh).
PYLIB = BENCHES / "target" / "pylib"
OUTPUT = ROOT / "docs" / "benchmarks.md"
QUICK = "--quick" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
MIB = 1 << 20


# --- running ---------------------------------------------------------------


def extension_path() -> Path:
    found = sorted((PYLIB / "anthill").glob("_anthill*.so"))
    if not found:
        raise SystemExit(f"no release build of anthill in {PYLIB}: run scripts/bench.sh")
    return found[0]


def extension_fingerprint() -> tuple[str, bool]:
    """The extension's digest, and whether it is an optimised build (a debug
    build carries DWARF sections; `maturin develop --release` builds none)."""
    content = extension_path().read_bytes()
    return hashlib.sha256(content).hexdigest()[:16], ".debug_info" not in elf_sections(content)


def elf_sections(elf: bytes) -> set[str]:
    """Section names of a 64-bit little-endian ELF file."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return set()
    shoff = int.from_bytes(elf[0x28:0x30], "little")
    entsize = int.from_bytes(elf[0x3A:0x3C], "little")
    count = int.from_bytes(elf[0x3C:0x3E], "little")
    names_index = int.from_bytes(elf[0x3E:0x40], "little")

    def header(i: int) -> tuple[int, int]:  # (name offset, file offset of content)
        at = shoff + i * entsize
        return int.from_bytes(elf[at : at + 4], "little"), int.from_bytes(
            elf[at + 0x18 : at + 0x20], "little"
        )

    names_at = header(names_index)[1]
    sections = set()
    for i in range(count):
        start = names_at + header(i)[0]
        sections.add(elf[start : elf.index(b"\0", start)].decode(errors="replace"))
    return sections


def run_json(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Runs one benchmark process; its last stdout line is its JSON result."""
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["_wall_s"] = time.monotonic() - started
    return result


def rust(name: str, timeout: float = 900) -> dict[str, Any]:
    args = [str(RUST_BENCH), name] + (["--quick"] if QUICK else [])
    return run_json(args, timeout)


EXTENSION: dict[str, Any] = {}


def python(script: str, timeout: float = 900) -> dict[str, Any]:
    digest, optimised = extension_fingerprint()
    if not optimised or digest != EXTENSION["digest"]:
        # Someone rebuilt the extension meanwhile (a debug build, or another
        # version): the figures would not be comparable.
        raise RuntimeError(
            f"the anthill extension changed during the run (now {digest}, "
            f"optimised: {optimised}); rerun scripts/bench.sh"
        )
    args = [sys.executable, str(PYTHON_BENCHES / script)] + (["--quick"] if QUICK else [])
    result = run_json(args, timeout, env={"PYTHONPATH": str(PYLIB)})
    if not Path(result["anthill_module"]).is_relative_to(PYLIB):
        raise RuntimeError(f"{script} imported anthill from {result['anthill_module']}")
    return result


# --- what was measured ---------------------------------------------------------


def source_digest() -> str:
    """A digest of the sources anthill is built from, working tree included."""
    paths = [ROOT / "Cargo.toml", ROOT / "Cargo.lock", ROOT / "pyproject.toml"]
    paths += sorted((ROOT / "src").rglob("*.rs"))
    paths += sorted((ROOT / "python" / "anthill").rglob("*.py"))
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# --- the machine -------------------------------------------------------------


def command_output(*args: str) -> str:
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return "unknown"


def disk_of(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    fields = command_output("df", "-h", "--output=source,fstype,size", str(path)).splitlines()
    source, fstype, size = (fields[-1].split() + ["?", "?", "?"])[:3]
    virtual = ", virtual disk" if Path(source).name.startswith(("vd", "xvd")) else ""
    return f"{source} ({fstype}, {size}{virtual}), folder {path}"


def git_commit() -> str:
    commit = command_output("git", "rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = command_output("git", "status", "--porcelain", "--untracked-files=no")
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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


# --- the suite ---------------------------------------------------------------


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


def p7_run() -> dict[str, Any]:
    """Both P7 scripts: requests of small puts, then anthill against obstore."""
    result = python("p7_s3_small_puts.py")
    result["throughput"] = python("p7_s3_throughput.py", timeout=1800)
    result["_wall_s"] += result["throughput"]["_wall_s"]
    return result


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


# peer_rows imports this module's helpers by name: the same objects, not a copy.
sys.modules.setdefault("suite", sys.modules[__name__])
from peer_rows import g1_rows, z2_rows

BENCHMARKS: list[
    tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], list[Row]]]
] = [
    ("P1", lambda: rust("p1"), p1_rows),
    ("P2", lambda: python("p2_throughput.py"), p2_rows),
    ("P3", lambda: rust("p3"), p3_rows),
    ("P4", lambda: python("p4_index_scaling.py"), p4_rows),
    ("P5", lambda: python("p5_small_items.py"), p5_rows),
    ("P6", lambda: python("p6_memory.py"), p6_rows),
    ("P7", lambda: p7_run(), p7_rows),
    ("P8", lambda: python("p8_streaming.py", timeout=3600), p8_rows),
    ("P9", lambda: python("p9_open.py", timeout=3600), p9_rows),
    ("C1", lambda: rust("c1"), c1_rows),
    ("C2", lambda: python("c2_compaction.py"), c2_rows),
    ("Z1", lambda: python("z1_zarr.py"), z1_rows),
    # Many writers at once (benches/many_writers.py).
    *[
        (
            name,
            lambda name=name: many_writers.run(python, name),
            lambda r, name=name: [Row(*cells) for cells in many_writers.ROWS[name](r)],
        )
        for name in many_writers.ROWS
    ],
    ("Z2", lambda: python("z2_zarr_folder.py", timeout=3600), z2_rows),
    ("G1", lambda: python("g1_garage_peers.py", timeout=3600), g1_rows),
]


def main() -> None:
    if "--source-digest" in sys.argv:
        print(source_digest())
        return
    started = time.monotonic()
    built_from = os.environ.get("ANTHILL_BENCH_SOURCES", source_digest())
    digest, optimised = extension_fingerprint()
    if not optimised:
        raise SystemExit("the anthill extension is a debug build: run scripts/bench.sh")
    EXTENSION["digest"] = digest
    scratch = Path(os.environ.get("ANTHILL_BENCH_SCRATCH", BENCHES / "target" / "scratch"))
    # What an interrupted run left; stores kept between runs (P9) stay.
    for entry in scratch.glob("*"):
        if entry.name != "kept":
            shutil.rmtree(entry, ignore_errors=True)
    machine = {
        "CPU": f"{cpu_model()}, {os.cpu_count()} cores",
        "Memory": memory_total(),
        "Disk (scratch folder)": disk_of(scratch),
        "OS": f"{platform.system()} {platform.release()}",
        "Date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "Commit": git_commit(),
        "Toolchain": f"{command_output('rustc', '--version')}; Python {platform.python_version()}",
        "Peers": f"obstore {package_version('obstore')}, diskcache {package_version('diskcache')}, "
        f"zarr {package_version('zarr')}, slatedb {package_version('slatedb')}, "
        f"dask {package_version('dask')}, icechunk {package_version('icechunk')}",
        "Load average at start (1, 5, 15 min)": load_average(),
    }
    results: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for name, run, to_rows in BENCHMARKS:
        if ONLY is not None and name not in ONLY:
            continue
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            result = run()
            results[name] = result
            rows.extend(to_rows(result))
            print(f"[bench] {name} done in {result['_wall_s']:.0f} s", file=sys.stderr, flush=True)
        except Exception as error:  # noqa: BLE001 - a failed benchmark is a row, not the end
            print(f"[bench] {name} failed: {error}", file=sys.stderr, flush=True)
            rows.append(failed_row(name, error))
    try:
        if ONLY is None or "P2" in ONLY:
            results["cpu"] = rust("cpu")
    except Exception as error:  # noqa: BLE001 - only a reference figure
        print(f"[bench] cpu reference failed: {error}", file=sys.stderr)
    machine["Load average at end"] = load_average()
    now = source_digest()
    machine["Sources"] = (
        f"digest {built_from}, unchanged from the build to the end of the run"
        if now == built_from
        else f"**changed during the run** (built from {built_from}, now {now}): "
        "the figures may mix versions; run again"
    )
    machine["Suite wall time"] = f"{time.monotonic() - started:.0f} s"
    if ONLY is None:
        OUTPUT.write_text(render(machine, rows, results))
    else:
        OUTPUT.write_text(splice(OUTPUT.read_text(), ONLY, machine, rows, results))
    print(render_table(rows))
    print(f"[bench] wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)


# --- the document -------------------------------------------------------------


def splice(
    previous: str,
    names: list[str],
    machine: dict[str, str],
    rows: list[Row],
    results: dict[str, dict[str, Any]],
) -> str:
    """`previous` with the rows and sections of the benchmarks `names`
    replaced by (or, if new, extended with) this run's, and a machine line
    saying when and where they were run."""
    from report import sections

    lines = previous.rstrip("\n").split("\n")

    # The results table: the first table after its heading.
    start = lines.index("## Results") + 1
    while not lines[start].startswith("| "):
        start += 1
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    # A rerun benchmark's rows take the place of its old ones; a new one's
    # go at the end.
    new_rows = render_table(rows).split("\n")[2:]

    def rows_of(name: str) -> list[str]:
        return [line for line in new_rows if line.startswith(f"| {name} ")]

    table: list[str] = []
    placed: set[str] = set()
    for line in lines[start + 2 : end]:
        name = next((n for n in names if line.startswith(f"| {n} ")), None)
        if name is None:
            table.append(line)
        elif name not in placed:
            table += rows_of(name)
            placed.add(name)
    table += [line for name in names if name not in placed for line in rows_of(name)]
    lines[start + 2 : end] = table

    # Each benchmark's section: replaced where it is, else appended.
    for name in names:
        body = sections([name], results)
        heading = next(
            (i for i, line in enumerate(lines) if line.split(" ")[:2] == ["###", name]), None
        )
        if heading is None:
            lines += ([""] if lines[-1] else []) + body
            continue
        stop = heading + 1
        while stop < len(lines) and not lines[stop].startswith(("### ", "## ")):
            stop += 1
        lines[heading:stop] = body

    # When and on what these rows were measured, beside the full run's machine.
    label = f"- Rows {', '.join(names)} rerun alone (`--only`)"
    note = (
        f"{label}: {machine['Date']}, commit {machine['Commit']}, "
        f"load average {machine['Load average at start (1, 5, 15 min)']} at start; "
        f"peers {machine['Peers']}; sources {machine['Sources']}"
    )

    def superseded(line: str) -> bool:  # an earlier rerun of no other rows
        if not (line.startswith("- Rows ") and " rerun alone (`--only`)" in line):
            return False
        earlier = line.removeprefix("- Rows ").split(" rerun alone")[0].split(", ")
        return set(earlier) <= set(names)

    lines = [line for line in lines if not superseded(line)]
    results_at = lines.index("## Results")
    lines.insert(results_at - 1, note)
    return "\n".join(lines).rstrip() + "\n"


def render_table(rows: list[Row]) -> str:
    header = ["row", "figure measured", "bound or peer (same run)", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows
    ]
    return "\n".join(lines)


def render(machine: dict[str, str], rows: list[Row], results: dict[str, dict[str, Any]]) -> str:
    from report import details  # the per-benchmark explanations and figures

    missed = [row.name for row in rows if row.met is False]
    out = [
        "# Benchmarks",
        "",
        "Generated by `bash scripts/bench.sh` (benches/suite.py); do not edit by hand.",
        "Every verdict is a ratio against a bound computed for this machine or a peer",
        "measured in the same run; absolute figures are shown beside, not judged.",
        "",
    ]
    if QUICK:
        out += ["**Quick run (`--quick`): small sizes, not the targets' figures.**", ""]
    out += ["## Machine", ""]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += ["", "## Results", "", render_table(rows), ""]
    if missed:
        out += [f"Targets missed: {len(missed)} of {sum(r.met is not None for r in rows)}.", ""]
    out += details(results)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    main()
