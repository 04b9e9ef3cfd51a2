#!/usr/bin/env bash
# The benchmark suite (issue 6): builds optimised anthill (the Python
# extension and the Rust benchmark binary), installs the peers, starts a
# local Garage cluster for the S3 benchmarks (P7, W3, W4; scripts/garage.sh,
# stopped at the end), runs every benchmark and rewrites docs/benchmarks.md with the
# machine and one table.
#
#   bash scripts/bench.sh           # the whole suite (about 8 minutes when built, and the W rows)
#   bash scripts/bench.sh --quick   # small sizes, to check the suite works
#   bash scripts/bench.sh --only Z1 # one benchmark; its rows replace those in the document
#   bash scripts/bench.sh --only W1,W2,W3,W4   # the many-writers rows (about 11 minutes on
#                                               # a busy machine, mostly anthill waiting for its
#                                               # writer lock; ANTHILL_BENCH_W_BASELINE=1 keeps the
#                                               # run as their baseline, see benches/many_writers.py)
#
# The Python benchmarks import a release build of anthill installed in
# benches/target/pylib (from `maturin build --release`), not the editable
# install in .venv, so a debug `maturin develop` meanwhile cannot change
# what is measured. Scratch data go under benches/target/scratch (the
# repository's disk; ANTHILL_BENCH_SCRATCH moves them). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything it needs it installs itself, into the virtual environment that
# scripts/test.sh makes (made here if missing): the build tool, anthill's own
# dependencies (the release build is installed without them) and the peers.
# It needs what the README's test command needs: python3, cargo, a network.
for tool in python3 cargo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench.sh: $tool is missing (see the README's test command)" >&2
        exit 1
    fi
done
python=.venv/bin/python
if [[ ! -x $python ]]; then
    echo "[bench] creating the virtual environment .venv" >&2
    python3 -m venv .venv
fi
pip_install() {
    $python -m pip install --quiet --disable-pip-version-check "$@"
}

echo "[bench] installing maturin, anthill's dependencies and the peers (obstore, diskcache, zarr, slatedb, dask, icechunk) into .venv" >&2
pip_install "maturin>=1.9,<2" "tqdm" "fsspec>=2024.12" \
    "obstore==0.12.1" "diskcache==5.6.3" "zarr==3.1.6" "slatedb==0.17.0" \
    "dask[array,distributed]==2026.8.0" "icechunk==1.1.21"

# What the build is made from; the suite reports whether it changed meanwhile.
ANTHILL_BENCH_SOURCES=$($python benches/suite.py --source-digest)
export ANTHILL_BENCH_SOURCES

echo "[bench] building anthill, optimised (maturin build --release)" >&2
# An editable install builds with a maturin of its own: .venv may lack one.
pip_install "maturin>=1.9,<2"
rm -rf benches/target/wheels benches/target/pylib
$python -m maturin build --release --quiet --out benches/target/wheels >&2
pip_install --no-deps --target benches/target/pylib benches/target/wheels/anthill-*.whl

# The Rust benchmark binary serves P1, P3, C1 and P2's CPU reference; a run
# of other rows alone (`--only W1,W2`) does without its build.
if [[ " $* " != *" --only "* || " $* " =~ P1|P2|P3|C1 ]]; then
    echo "[bench] building the Rust benchmarks (benches/, release)" >&2
    cargo build --release --quiet --manifest-path benches/Cargo.toml
fi

# P7, G1, W3 and W4 run on S3: a Garage cluster of the suite's own (unless
# ANTHILL_TEST_S3_URL names one already), stopped when the suite ends.
if [[ -z ${ANTHILL_TEST_S3_URL:-} && ( " $* " != *" --only "* || " $* " =~ P7|G1|W3|W4 ) ]]; then
    export GARAGE_STATE_DIR=${GARAGE_STATE_DIR:-/tmp/anthill-bench-garage-$(id -u)}
    export GARAGE_BASE_PORT=${GARAGE_BASE_PORT:-3950}
    bash scripts/garage.sh install # at once if scripts/test.sh installed it
    if garage_env=$(bash scripts/garage.sh start 3); then
        eval "$garage_env"
        trap 'bash scripts/garage.sh stop' EXIT
    else
        echo "[bench] the Garage cluster did not start: P7, W3 and W4 will fail" >&2
    fi
fi

$python benches/suite.py "$@"
