#!/usr/bin/env bash
# The `fanout` command's benchmarks, each tool side by side in one hyperfine
# run (see docs/BENCHMARKS.md, "The `fanout` command"):
#
# 1. Job start: N jobs of `true` at -j J for the floor (forkwait: fork/exec
#    and wait, nothing else), fanout (plain, and with -k --joblog),
#    xargs -P, rust-parallel and GNU parallel.
# 2. --pipe and --pipepart throughput: a SIZE file of 41-byte lines through
#    `wc -l` jobs, fanout against GNU parallel, with each tool's peak memory.
#
#   scripts/bench-cli.sh                      # both parts
#   PARTS=jobs scripts/bench-cli.sh           # or PARTS=pipe
#   RUNS=5 PARALLEL_RUNS=2 N=3000 J=8 SIZE=2G scripts/bench-cli.sh
#   FANOUT=/path/to/other/fanout scripts/bench-cli.sh   # compare a build
#
# Needs: hyperfine (apt-get install -y hyperfine), GNU parallel (Debian
# package `parallel`), rust-parallel 1.24 (cargo install rust-parallel
# --version 1.24.0 --root /tmp/rp; or set RUST_PARALLEL=/path/to/it), GNU
# time (/usr/bin/time) for peak memory. Missing tools are skipped, with a
# note. Results: $OUT (default /tmp/bench-cli.md) and $OUT.*.json.
set -euo pipefail

N=${N:-3000}
J=${J:-8}
RUNS=${RUNS:-5}
PARALLEL_RUNS=${PARALLEL_RUNS:-1}
SIZE=${SIZE:-2G}
PARTS=${PARTS:-jobs pipe}
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
TRUE=$(command -v true)
: >"$OUT"

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" >&2

# Ratios to the first command of a hyperfine JSON file (mean times).
ratios() {
    python3 - "$@" <<'PY'
import json, os, sys
rows = []
for path in sys.argv[1:]:
    if os.path.exists(path):
        rows += json.load(open(path))["results"]
base = rows[0]["mean"]
print(f"| command | mean (s) | ± σ | min (s) | runs | ratio to {rows[0]['command']} |")
print("|---|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['command']} | {r['mean']:.3f} | {r['stddev'] or 0:.3f} | {r['min']:.3f} | {len(r['times'])} | {r['mean'] / base:.2f}x |")
PY
}

if [[ " $PARTS " == *" jobs "* ]]; then
    seq "$N" >"$WORK/inputs"
    args=(--warmup 1 --runs "$RUNS" --export-json "$OUT.jobs.json"
        --command-name "floor (forkwait)" "$FORKWAIT $N $J $TRUE"
        --command-name "fanout" "$FANOUT -j $J -a $WORK/inputs $TRUE"
        --command-name "fanout -k --joblog" "$FANOUT -j $J -k --joblog $WORK/joblog -a $WORK/inputs $TRUE"
        --command-name "xargs -P $J" "xargs -P $J -n 1 -a $WORK/inputs $TRUE")
    if [[ -x $RUST_PARALLEL ]]; then
        args+=(--command-name "rust-parallel" "$RUST_PARALLEL -j $J -i $WORK/inputs $TRUE")
    else
        echo "note: rust-parallel not found, skipped (cargo install rust-parallel --version 1.24.0 --root /tmp/rp)" >&2
    fi
    hyperfine -N "${args[@]}" >&2
    if command -v parallel >/dev/null; then
        # GNU parallel is several times slower: fewer runs, no warm-up.
        hyperfine -N --runs "$PARALLEL_RUNS" --export-json "$OUT.jobs-parallel.json" \
            --command-name "GNU parallel" "parallel -j $J -a $WORK/inputs $TRUE" >&2
    else
        echo "note: GNU parallel not found, skipped" >&2
    fi
    { echo; echo "Job start: $N jobs of true at -j $J"; echo; ratios "$OUT.jobs.json" "$OUT.jobs-parallel.json"; } | tee -a "$OUT"
fi

if [[ " $PARTS " == *" pipe "* ]]; then
    big=$WORK/big
    yes "the quick brown fox jumps over 0123456789" | head -c "$SIZE" >"$big" || true
    bytes=$(stat -c %s "$big")
    cmds=(--command-name "fanout --pipe" "sh -c '$FANOUT --pipe wc -l < $big >/dev/null'"
        --command-name "fanout --pipe --block 10M" "sh -c '$FANOUT --pipe --block 10M wc -l < $big >/dev/null'"
        --command-name "fanout --pipepart" "$FANOUT --pipepart -a $big wc -l")
    if command -v parallel >/dev/null; then
        cmds=(--command-name "GNU parallel --pipe" "sh -c 'parallel --pipe wc -l < $big >/dev/null'"
            --command-name "GNU parallel --pipe --block 10M" "sh -c 'parallel --pipe --block 10M wc -l < $big >/dev/null'"
            "${cmds[@]}"
            --command-name "GNU parallel --pipepart" "parallel --pipepart -a $big wc -l")
    fi
    hyperfine --warmup 1 --runs "$PARALLEL_RUNS" --export-json "$OUT.pipe.json" --output=null "${cmds[@]}" >&2
    {
        echo
        echo "--pipe throughput: $bytes bytes through wc -l jobs (-j $(nproc), the default)"
        echo
        ratios "$OUT.pipe.json"
        python3 - "$OUT.pipe.json" "$bytes" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2])
print()
print("| command | MB/s |")
print("|---|---:|")
for r in rows:
    print(f"| {r['command']} | {size / r['mean'] / 1e6:.0f} |")
PY
        if [[ -x /usr/bin/time ]]; then
            echo
            echo "| command | peak memory (max RSS, KiB) |"
            echo "|---|---:|"
            for block in 1M 10M; do
                rss=$(/usr/bin/time -f %M sh -c "$FANOUT --pipe --block $block wc -l < $big >/dev/null" 2>&1 >/dev/null | tail -1)
                echo "| fanout --pipe --block $block | $rss |"
                if command -v parallel >/dev/null; then
                    rss=$(/usr/bin/time -f %M sh -c "parallel --pipe --block $block wc -l < $big >/dev/null" 2>&1 >/dev/null | tail -1)
                    echo "| GNU parallel --pipe --block $block | $rss |"
                fi
            done
        fi
    } | tee -a "$OUT"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" >&2
