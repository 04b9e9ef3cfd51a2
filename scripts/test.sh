#!/usr/bin/env bash
# Installs everything the tests need and runs every test: formatting and
# lints, the Rust suite and the Python suite, with the S3 tests against a
# real 3-node Garage cluster started (and stopped) here.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The power-loss tests mount a FUSE file system (pyfuse3 builds against libfuse3).
bash scripts/install_fuse.sh
# Builds the Rust extension (maturin) and installs the test tools.
python -m pip install --quiet -e '.[test]'

cargo fmt --check
cargo clippy --all-targets --features python -- -D warnings
# The fuzz targets and the benchmarks use the library too: they must build,
# and are kept to the same formatting.
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins
cargo check --quiet --manifest-path benches/Cargo.toml
cargo fmt --check --manifest-path fuzz/Cargo.toml
cargo fmt --check --manifest-path benches/Cargo.toml
ruff check python tests_py benches
ruff format --check python tests_py benches
# The wheel users install: a release build through zig, manylinux2014 checked
# by auditwheel, smoke-tested on CPython 3.10 with no Rust on PATH.
bash scripts/wheel.sh --ci

bash scripts/garage.sh install
garage_env=$(bash scripts/garage.sh start 3) # an assignment fails under set -e
trap 'bash scripts/garage.sh stop' EXIT
eval "$garage_env"

cargo test
# The tests that need the Garage cluster are ignored by a plain `cargo test`
# (as is the tool that made the mixed-format fixture, which tests nothing).
cargo test --test tests_rs -- --ignored --skip node_kill --skip write_mixed_fixture
python -m pytest tests_py
# Kills a Garage node, so it runs last, on its own.
ANTHILL_TEST_KILL_NODE=1 cargo test --test tests_rs s3::node_kill -- --ignored
