#!/usr/bin/env bash
# Builds the fuzz targets of `fuzz/` and runs each for a short, fixed time
# (FUZZ_SECONDS, default 20), so that they cannot rot. No cargo-fuzz and no
# nightly needed: this passes libFuzzer's coverage flags itself (what
# `cargo fuzz run -s none` does), with `--target` so that they reach only
# the fuzzed code, not build scripts. A crash fails the script, and
# libFuzzer leaves the crashing input in the current directory.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
target="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-../target/fuzz}"
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares" \
    cargo build --release --bins --target "$target"
for fuzz_target in template joblog; do
    corpus="$(mktemp -d)"
    "$CARGO_TARGET_DIR/$target/release/$fuzz_target" \
        -max_total_time="$seconds" -print_final_stats=1 "$corpus" 2>&1 \
        | grep -E '^(Done|stat::number_of_executed_units)' \
        | sed "s/^/$fuzz_target: /"
    rm -rf "$corpus"
done
