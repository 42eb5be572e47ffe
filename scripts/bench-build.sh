#!/usr/bin/env bash
# Benchmark of `hermetic build base` (not a test): a cold build of the base tree with the debs
# already in the store, side by side with `mmdebstrap --variant=apt` of the same package set
# from the same mirror, and a warm no-op `hermetic build base`.
# Needs root (or subordinate ids) and the mmdebstrap package (installed if missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
cargo build --release -q
bin=$PWD/target/release/hermetic
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HERMETIC_STORE=$work/store

# The Debian mirror of the host's apt configuration (never written down here).
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep -v security | head -n1)
security=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' | grep security | head -n1)
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list.d/*.sources" >&2; exit 1; }

"$bin" fetch -q
packages=$(python3 -c 'import sys, tomllib; print(",".join(tomllib.load(open(sys.argv[1], "rb"))["packages"]))' recipes/base.toml)

t0=$(date +%s.%N)
"$bin" build base --output "$work/out" >/dev/null 2>&1
t1=$(date +%s.%N)
"$bin" build base --output "$work/out" >/dev/null 2>&1
t2=$(date +%s.%N)

# mmdebstrap downloads the packages through apt from the same mirror (a fast local mirror
# here: about a second for the whole set); hermetic reads them from its store.
keyring=$PWD/keys/debian-archive-keyring.pgp
t3=$(date +%s.%N)
if mmdebstrap --quiet --variant=apt --include="$packages" --keyring="$keyring" --mode=root \
    trixie "$work/mm.tar" "deb $mirror trixie main" "deb $security trixie-security main" \
    >"$work/mm.log" 2>&1; then mm_ok=yes; else mm_ok=no; tail -5 "$work/mm.log" >&2; fi
t4=$(date +%s.%N)

awk -v cold="$(echo "$t1 - $t0" | bc)" -v warm="$(echo "$t2 - $t1" | bc)" \
    -v mm="$(echo "$t4 - $t3" | bc)" -v ok="$mm_ok" 'BEGIN {
  printf "%-46s %8.2f s\n", "hermetic build base (cold, debs in store)", cold
  printf "%-46s %8.2f s\n", "hermetic build base (warm, no-op)", warm
  printf "%-46s %8.2f s%s\n", "mmdebstrap --variant=apt (same packages)", mm, (ok == "yes" ? "" : "  (FAILED)")
  if (ok == "yes") printf "ratio hermetic cold / mmdebstrap: %.2f\n", cold / mm
}'
