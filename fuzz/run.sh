#!/bin/sh
# Runs the fuzz targets one after the other, each for SECONDS (default 600),
# with the seeds, dictionaries and regression inputs as starting corpus.
# Findings land in fuzz/artifacts/<target>/; copy each into
# fuzz/regressions/<target>/ once fixed. Needs cargo-fuzz; on a stable
# toolchain RUSTC_BOOTSTRAP=1 lets it use the nightly-only sanitizer flags.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -eu
cd "$(dirname "$0")"

seconds="${1:-600}"
[ $# -gt 0 ] && shift
targets="${*:-config state import}"

for target in $targets; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target: ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" \
    "corpus/$target" "seeds/$target" "regressions/$target" -- \
    -dict="dicts/$target.dict" -max_total_time="$seconds" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -artifact_prefix="artifacts/$target/" 2>&1 | tail -n 25
done
