#!/bin/sh
# bench/run.sh: what `make bench` runs (as root, after the release build).
# Makes sure the reference modules are installed (pam_google_authenticator,
# pam_oath, pam_permit from Debian), builds the C helper that logs in once
# per process, and runs otpgate-bench, which configures every module in a
# work folder of its own and prints the table (saved beside the state).
#
# Settings, from the environment:
#   OTPGATE_BENCH_DIR   work folder on a real disk (default /var/tmp/otpgate-bench);
#                       the 100,000-user state folder is kept there between runs
#   OTPGATE_BENCH_RUNS  runs whose medians are reported (default 11)
#   OTPGATE_BENCH_ROWS  only these rows, e.g. 1,3,5b (default: all)
set -eu
cd "$(dirname "$0")/.."

work="${OTPGATE_BENCH_DIR:-/var/tmp/otpgate-bench}"
runs="${OTPGATE_BENCH_RUNS:-11}"
release="${CARGO_TARGET_DIR:-target}/release"

if [ "$(id -u)" -ne 0 ]; then
  echo "bench/run.sh: run as root (make bench does)" >&2
  exit 1
fi
sh scripts/install-deps.sh bench

for program in "$release/otpgate-bench" "$release/libotpgate.so"; do
  if [ ! -e "$program" ]; then
    echo "bench/run.sh: $program is missing: run cargo build --release --workspace" >&2
    exit 1
  fi
done

mkdir -p "$work"
cc -O2 -Wall -Wextra -o "$work/fresh-login" bench/fresh-login.c -lpam

set -- --work "$work" --runs "$runs" --module "$release/libotpgate.so" --fresh-login "$work/fresh-login"
if [ -n "${OTPGATE_BENCH_ROWS:-}" ]; then
  set -- "$@" --rows "$OTPGATE_BENCH_ROWS"
fi

echo "running: $release/otpgate-bench $*" >&2
"$release/otpgate-bench" "$@" > "$work/results.md"
cat "$work/results.md"
echo "saved in $work/results.md" >&2
