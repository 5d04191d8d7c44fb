#!/bin/sh
# Builds the man pages otpgate.8 and pam_otpgate.8 from their Markdown
# sources next to this script, with pandoc, into the folder given.
#   sh man/build.sh OUTDIR
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: sh man/build.sh OUTDIR" >&2
    exit 2
fi
out=$1
here=$(dirname "$0")

if ! command -v pandoc >/dev/null 2>&1; then
    echo "man/build.sh: pandoc is not installed (Debian package pandoc); cannot build the man pages" >&2
    exit 1
fi

mkdir -p "$out"
for page in otpgate.8 pam_otpgate.8; do
    pandoc --standalone --from markdown-smart --to man "$here/$page.md" --output "$out/$page"
done
echo "man pages written to $out"
