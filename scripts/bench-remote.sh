#!/usr/bin/env bash
# What `--redis` costs: the `fanout` command's jobs run through a Redis
# server and `fanout worker` processes on this machine, against the same
# jobs run locally. Everything on loopback: one redis-server of its own
# (a free port, no persistence), stopped by pid on exit.
#
# (a) Per-job overhead: N jobs of `true`, locally (`fanout -j 8`) and over
#     2 workers of -j 8 (coordinator -j 16): wall time, jobs/s, and what
#     Redis adds per job, (remote - local) / N.
# (b) Throughput of short jobs: M jobs of `sleep 0.1` over 4 workers of
#     -j 16 (coordinator -j 64), against the ideal M * 0.1 / 64 s, and the
#     same jobs run locally at -j 64 (what this machine can do). (-N0:
#     each job takes an input but is given none; `sleep 0.1 N` would sleep
#     0.1 + N seconds.)
#
# The four measurements run in the same rounds, interleaved (the order
# rotated every round, round 0 a warm-up that is not counted), so that load
# from other processes falls on all alike; figures are medians over the
# rounds. The pools of (a) and (b) serve different Redis databases, so
# each run reaches only its own workers.
#
#   scripts/bench-remote.sh
#   ROUNDS=5 N=20000 M=2000 scripts/bench-remote.sh
#
# Needs: redis-server and redis-cli (Debian package redis-server).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
N=${N:-10000}
M=${M:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --release --manifest-path "$ROOT/Cargo.toml" -p fanout-cli --bin fanout >&2
FANOUT=$CARGO_TARGET_DIR/release/fanout

WORK=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_BEFORE=$(load)

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -p "$PORT" ping | grep -q PONG || { echo "redis-server did not start" >&2; exit 1; }

head -c 32 /dev/urandom >"$WORK/secret"
chmod 600 "$WORK/secret"
URL_A=redis://127.0.0.1:$PORT/0
URL_B=redis://127.0.0.1:$PORT/1

# worker URL JOBS NAME: starts a worker, waits until it serves.
worker() {
    "$FANOUT" worker --redis "$1" --secret-file "$WORK/secret" -j "$2" --id "$3" --drain 5 \
        2>"$WORK/$3.log" &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "serving jobs" "$WORK/$3.log" && return 0
        sleep 0.1
    done
    echo "worker $3 did not start:" >&2
    cat "$WORK/$3.log" >&2
    exit 1
}
worker "$URL_A" 8 a1
worker "$URL_A" 8 a2
for i in 1 2 3 4; do worker "$URL_B" 16 "b$i"; done

seq "$N" >"$WORK/true-inputs"
seq "$M" >"$WORK/sleep-inputs"
names=(local remote sleep sleeplocal)
declare -A cmd=(
    [local]="$FANOUT -j 8 -a $WORK/true-inputs true"
    [remote]="$FANOUT --redis $URL_A --secret-file $WORK/secret -j 16 -a $WORK/true-inputs true"
    [sleep]="$FANOUT --redis $URL_B --secret-file $WORK/secret -j 64 -N0 -a $WORK/sleep-inputs sleep 0.1"
    [sleeplocal]="$FANOUT -j 64 -N0 -a $WORK/sleep-inputs sleep 0.1"
)

# Rounds: one line per round, "local remote sleep" wall times in seconds.
: >"$WORK/times"
for ((r = 0; r <= ROUNDS; r++)); do
    declare -A took=()
    for ((k = 0; k < 4; k++)); do
        name=${names[$(((r + k) % 4))]}
        start=$EPOCHREALTIME
        if ! ${cmd[$name]} >/dev/null 2>"$WORK/run.err"; then
            echo "round $r, $name failed:" >&2
            cat "$WORK/run.err" >&2
            exit 1
        fi
        took[$name]=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
        echo "round $r $name: ${took[$name]} s" >&2
    done
    if ((r > 0)); then
        echo "${took[local]} ${took[remote]} ${took[sleep]} ${took[sleeplocal]}" >>"$WORK/times"
    fi
done
LOAD_AFTER=$(load)

awk -v n="$N" -v m="$M" -v rounds="$ROUNDS" -v before="$LOAD_BEFORE" -v after="$LOAD_AFTER" '
function median(a, k,    i, j, t, b) {
    for (i = 1; i <= k; i++) b[i] = a[i]
    for (i = 2; i <= k; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
    return k % 2 ? b[(k + 1) / 2] : (b[k / 2] + b[k / 2 + 1]) / 2
}
{ k++; l[k] = $1; r[k] = $2; s[k] = $3; sl[k] = $4; o[k] = ($2 - $1) / n * 1e6 }
END {
    ideal = m * 0.1 / 64
    ml = median(l, k); mr = median(r, k); ms = median(s, k); msl = median(sl, k)
    printf "`fanout --redis` on loopback, %d rounds (medians; round 0 a warm-up, not counted)\n\n", rounds
    print "| measurement | wall time (s) | jobs/s | per-round times (s) | figure |"
    print "|---|---:|---:|---|---|"
    lt = rt = st = slt = ""
    for (i = 1; i <= k; i++) { lt = lt (i > 1 ? ", " : "") l[i]; rt = rt (i > 1 ? ", " : "") r[i]; st = st (i > 1 ? ", " : "") s[i]; slt = slt (i > 1 ? ", " : "") sl[i] }
    printf "| (a) %d x `true`, local, -j 8 | %.3f | %.0f | %s | |\n", n, ml, n / ml, lt
    printf "| (a) %d x `true`, 2 workers -j 8, coordinator -j 16 | %.3f | %.0f | %s | overhead per job: %.0f µs (median of per-round (remote - local) / %d) |\n", n, mr, n / mr, rt, median(o, k), n
    printf "| (b) %d x `sleep 0.1`, 4 workers -j 16, coordinator -j 64 | %.3f | %.0f | %s | %.2fx the ideal %.4f s |\n", m, ms, m / ms, st, ms / ideal, ideal
    printf "| (b) the same %d jobs locally, -j 64 | %.3f | %.0f | %s | %.2fx the ideal |\n", m, msl, m / msl, slt, msl / ideal
    printf "| load average (1, 5, 15 min) | | | | before: %s; after: %s |\n", before, after
}' "$WORK/times"
