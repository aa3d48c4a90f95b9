#!/usr/bin/env bash
# Times 10,000 jobs of `true` at -j 8 for the floor (forkwait: fork/exec and
# wait, nothing else), fanout (plain, and with -k --joblog), xargs -P 8,
# GNU parallel and rust-parallel, with hyperfine. See docs/BENCHMARKS.md ("The `fanout` command").
#
#   scripts/bench-cli.sh                 # 3 runs each, GNU parallel 1 run
#   RUNS=5 PARALLEL_RUNS=2 N=10000 J=8 scripts/bench-cli.sh
#   FANOUT=/path/to/other/fanout scripts/bench-cli.sh   # compare a build
#
# Needs: hyperfine (apt-get install -y hyperfine), GNU parallel (Debian
# package `parallel`), rust-parallel (cargo install rust-parallel --root
# /tmp/rp; or set RUST_PARALLEL=/path/to/rust-parallel). Tools that are
# missing are skipped, with a note. Results: $OUT (default
# /tmp/bench-cli.md, hyperfine's markdown) and $OUT.json.
set -euo pipefail

N=${N:-10000}
J=${J:-8}
RUNS=${RUNS:-3}
PARALLEL_RUNS=${PARALLEL_RUNS:-1}
OUT=${OUT:-/tmp/bench-cli.md}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --release --manifest-path "$ROOT/Cargo.toml" \
    -p fanout-cli --bin fanout -p fanout-bench --bin forkwait >&2
BIN=$CARGO_TARGET_DIR/release
FANOUT=${FANOUT:-$BIN/fanout}
FORKWAIT=$BIN/forkwait
RUST_PARALLEL=${RUST_PARALLEL:-$(command -v rust-parallel || echo /tmp/rp/bin/rust-parallel)}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
seq "$N" >"$WORK/inputs"
rm -f "$OUT.json" "$OUT.parallel.json"
TRUE=$(command -v true)

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

args=(--warmup 1 --runs "$RUNS" --export-markdown "$OUT" --export-json "$OUT.json"
    --command-name "floor (forkwait)" "$FORKWAIT $N $J $TRUE"
    --command-name "fanout" "$FANOUT -j $J -a $WORK/inputs $TRUE"
    --command-name "fanout -k --joblog" "$FANOUT -j $J -k --joblog $WORK/joblog -a $WORK/inputs $TRUE"
    --command-name "xargs -P $J" "xargs -P $J -n 1 -a $WORK/inputs $TRUE")
if [[ -x $RUST_PARALLEL ]]; then
    args+=(--command-name "rust-parallel" "$RUST_PARALLEL -j $J -i $WORK/inputs $TRUE")
else
    echo "note: rust-parallel not found, skipped (cargo install rust-parallel --root /tmp/rp)" >&2
fi
hyperfine -N "${args[@]}"

if command -v parallel >/dev/null; then
    # GNU parallel takes ~35 s a run here: fewer runs, no warm-up.
    hyperfine -N --runs "$PARALLEL_RUNS" --export-markdown "$OUT.parallel" \
        --export-json "$OUT.parallel.json" \
        --command-name "GNU parallel" "parallel -j $J -a $WORK/inputs $TRUE"
else
    echo "note: GNU parallel not found, skipped" >&2
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Ratios to the floor (mean times).
python3 - "$OUT.json" "$OUT.parallel.json" <<'PY'
import json, os, sys
rows = []
for path in sys.argv[1:]:
    if os.path.exists(path):
        rows += json.load(open(path))["results"]
floor = next(r["mean"] for r in rows if r["command"].startswith("floor"))
print("| tool | mean (s) | ± σ | min (s) | runs | ratio to floor |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['command']} | {r['mean']:.2f} | {r['stddev'] or 0:.2f} | {r['min']:.2f} | {len(r['times'])} | {r['mean'] / floor:.2f}x |")
PY
