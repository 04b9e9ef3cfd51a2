#!/usr/bin/env bash
# Fuzzes every decoder of persisted bytes (issue 5, R6) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Targets (fuzz/fuzz_targets/): pad_decode, pad_segments, crypto_open, meta_decode,
# journal_records, checkpoint, records_roundtrip, store_open.
# Environment:
#   FUZZ_TARGETS="a b"     fuzz only these targets
#   FUZZ_JOBS=N            cargo build jobs (default: cargo's)
#   FUZZ_CODEGEN_UNITS=N   codegen units of the fuzz build (default 16: a much
#                          faster build than cargo-fuzz's 1, for little speed)
#   FUZZ_ARGS="..."        extra libFuzzer flags for every target; e.g.
#                          FUZZ_ARGS="-fork=1 -ignore_crashes=1" keeps fuzzing
#                          after a crash, to find more than the first bug (the
#                          corpus itself must not hold a crashing input)
#
# Needs cargo-fuzz (installed if missing) and a nightly toolchain; without
# one it uses the stable toolchain with RUSTC_BOOTSTRAP=1. Corpora persist in
# fuzz/corpus/<target> (seeded with genuine objects by fuzz/src/bin/make_seeds.rs),
# crashes land in fuzz/artifacts/<target>. Prints one summary line per
# target, `target: N execs, C crashes`, and exits non-zero if any crashed.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

all_targets=(pad_decode pad_segments crypto_open meta_decode journal_records checkpoint records_roundtrip store_open)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

# Inputs larger than this are not tried: pads may be big (and sealed pad
# objects are read whole), everything else is small.
max_len() {
    case "$1" in
        pad_decode | pad_segments) echo $((1 << 20)) ;;
        *) echo $((64 << 10)) ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo_fuzz=(cargo +nightly fuzz)
    echo "== toolchain: nightly ($(rustc +nightly --version))"
else
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
    echo "== toolchain: no nightly, stable with RUSTC_BOOTSTRAP=1 ($(rustc --version))"
fi

# The same flags for build and run, so that `run` does not rebuild.
build_flags=(--codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
if [ -n "${FUZZ_JOBS:-}" ]; then
    export CARGO_BUILD_JOBS="$FUZZ_JOBS"
fi

echo "== building fuzz targets (once)"
"${cargo_fuzz[@]}" build "${build_flags[@]}"

triple="$(rustc -vV | sed -n 's/^host: //p')"
seeder="fuzz/target/$triple/release/make_seeds"
echo "== writing seed inputs"
"$seeder" fuzz/corpus

logs="fuzz/target/logs"
mkdir -p "$logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    echo "== fuzzing $target for ${seconds}s (log: $log)"
    stamp="$logs/$target.start"
    touch "$stamp"
    status=0
    # shellcheck disable=SC2086
    "${cargo_fuzz[@]}" run "${build_flags[@]}" "$target" -- \
        -max_total_time="$seconds" \
        -max_len="$(max_len "$target")" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    # libFuzzer ends a clean run with `Done N runs in S second(s)` and its
    # final stats (`stat::number_of_executed_units: N`).
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    if [ -z "$execs" ]; then
        # (fork mode prints no final stats, only `#N: cov: …` lines)
        execs="$(sed -n 's/^#\([0-9][0-9]*\)[:[:space:]].*/\1/p' "$log" | tail -1)"
    fi
    grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs' "$log" || true
    # Crashes, timeouts, leaks and out-of-memory inputs saved by this run.
    crashes="$(find "fuzz/artifacts/$target" -type f -newer "$stamp" | wc -l)"
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1
    fi
    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "!! $target failed (exit $status):"
        grep -E -A1 'panicked at|==[0-9]+== ?ERROR|^SUMMARY|out-of-memory|timeout after' "$log" |
            grep -vE '^--$|^ +[0-9]+: |^ +at ' | head -n 12 | sed 's/^/   /' || true
        find "fuzz/artifacts/$target" -type f -newer "$stamp" | sed 's/^/   artifact: /' || true
        echo "   reproduce: ${cargo_fuzz[*]} run ${build_flags[*]} $target <artifact>"
    fi
    summary+=("$target: ${execs:-0} execs, $crashes crashes")
done

echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
