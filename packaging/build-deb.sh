#!/bin/sh
# Builds the Debian package of otpgate into target/debian/ (what `make deb`
# runs): installs cargo-deb when it is missing, builds the release module and
# command and the man pages, then packs them as Cargo.toml's
# [package.metadata.deb] says, for this machine's architecture.
set -eu
cd "$(dirname "$0")/.."

# cargo-deb comes from crates.io; the first install compiles for minutes.
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb (once per machine)"
    cargo install cargo-deb --locked --version 3.8.0
fi

# The module's folder depends on the architecture (see Cargo.toml).
case "$(dpkg --print-architecture)" in
    amd64) variant="" ;;
    arm64) variant="--variant=arm64" ;;
    *)
        echo "build-deb.sh: no module folder known for $(dpkg --print-architecture);" \
            "add a variant to [package.metadata.deb] in Cargo.toml" >&2
        exit 1
        ;;
esac

# Build what the package holds, then pack it without building again.
cargo build --release -p otpgate
sh man/build.sh target/man
rm -f target/debian/otpgate_*.deb
cargo deb -p otpgate --no-build $variant
ls target/debian/otpgate_*.deb
