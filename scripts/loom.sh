#!/usr/bin/env bash
# Model checks of the engine's own synchronisation (loom): the slab's wake
# queue, the run's stop flag and the no-start-after-failure rule, the
# blocking runs' tracker and watch. The primitives of `crates/fanout/src/sync.rs`
# become loom's with `--cfg fanout_loom`, so the models run the real code.
#
# Own target directory: the cfg changes every crate's build, and must not
# invalidate the main one. LOOM_MAX_PREEMPTIONS bounds the interleavings
# explored (3, as tokio's CI does), which bounds the time (seconds here).
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
RUSTFLAGS="--cfg fanout_loom" \
CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}" \
    cargo test -p fanout --lib --release loom -- --test-threads=1
