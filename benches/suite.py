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
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import many_writers
from peer_rows import g1_rows, z2_rows
from rows import (
    Row,
    c1_rows,
    c2_rows,
    failed_row,
    p1_rows,
    p2_rows,
    p3_rows,
    p4_rows,
    p5_rows,
    p6_rows,
    p7_rows,
    p8_rows,
    p9_rows,
    z1_rows,
)

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "benches"
RUST_BENCH = BENCHES / "target" / "release" / "anthill-bench"
PYTHON_BENCHES = BENCHES / "python"
#: The release build of anthill the Python benchmarks import (scripts/bench.sh).
PYLIB = BENCHES / "target" / "pylib"
OUTPUT = ROOT / "docs" / "benchmarks.md"
QUICK = "--quick" in sys.argv
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None


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


# --- the suite ---------------------------------------------------------------


def p7_run() -> dict[str, Any]:
    """Both P7 scripts: requests of small puts, then anthill against obstore."""
    result = python("p7_s3_small_puts.py")
    result["throughput"] = python("p7_s3_throughput.py", timeout=1800)
    result["_wall_s"] += result["throughput"]["_wall_s"]
    return result


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
