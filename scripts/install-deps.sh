#!/bin/sh
# Installs what building, testing and demonstrating otpgate needs on Debian or
# Ubuntu, and only what is missing. Usage: scripts/install-deps.sh [test|demo|bench|deb]
set -eu

want="${1:-test}"

base="libpam0g-dev libpam-modules pamtester libpam-wrapper libnss-wrapper oathtool pkg-config gcc"
case "$want" in
  demo)  packages="$base" ;;
  test)  packages="$base pandoc dpkg-dev rpm expect openssh-server openssh-client postgresql postgresql-contrib libpq5 openssl zbar-tools valgrind strace" ;;
  bench) packages="$base libpam-google-authenticator libpam-oath linux-perf strace valgrind postgresql postgresql-contrib libpq5 openssl" ;;
  deb)   packages="$base pandoc dpkg-dev" ;;
  *) echo "usage: $0 [test|demo|bench|deb]" >&2; exit 2 ;;
esac

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=""
for p in $packages; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -n "$missing" ]; then
  echo "installing:$missing"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The Rust toolchain: the distribution's cargo is used when new enough,
# otherwise rustup installs a current one for this user.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: installing the Rust toolchain with rustup"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  echo "Rust installed in ~/.cargo/bin; add it to PATH (. ~/.cargo/env) and run make again."
fi
