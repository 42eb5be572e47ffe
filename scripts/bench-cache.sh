#!/usr/bin/env bash
# Benchmark of shared caches (not a test, not run in CI): a cold `hermetic build TARGET` into an
# empty store, against a warm-cache build of the same target into another empty store that
# takes the pins and the signed step outputs from a registry. Prints both wall times and the
# bytes moved (from the mirror, to and from the registry).
#
#   scripts/bench-cache.sh [TARGET]      TARGET defaults to `base`; `gcp` builds the kernel
#                                        cold (20-40 minutes on two cores).
#   HERMETIC_BIN=target/debug/hermetic scripts/bench-cache.sh   times that binary instead of
#                                        building a release one.
#
# Needs Debian's docker-registry (scripts/setup.sh --tests), run here on a free port of
# 127.0.0.1 with its storage in a temporary directory, and root or subordinate ids for the
# sandbox. pins.lock must be current (`hermetic lock`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-base}
command -v docker-registry >/dev/null || { echo "docker-registry is missing: bash scripts/setup.sh --tests" >&2; exit 1; }
# HERMETIC_BIN: a hermetic binary to time instead of a fresh release build.
if [ -z "${HERMETIC_BIN:-}" ]; then cargo build --release -q; fi
bin=${HERMETIC_BIN:-$PWD/target/release/hermetic}
work=$(mktemp -d)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
cache=127.0.0.1:$port/bench

"$bin" sign --generate-key "$work/bench.key" >/dev/null

now() { date +%s.%N; }
# Bytes of a directory tree.
size() { du -sb "$1" 2>/dev/null | cut -f1; }

# Cold: an empty store, everything from the mirror and every step run.
t0=$(now)
"$bin" --store "$work/cold" build "$target" --no-cache --output "$work/out-cold" >"$work/cold.log" 2>&1
t1=$(now)
cold_blobs=$(size "$work/cold/v1/blobs")

"$bin" --store "$work/cold" --json cache push "$cache" --key "$work/bench.key" >"$work/push.json" 2>"$work/push.log"
t2=$(now)
pushed=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["blob_bytes"] + r["step_bytes"])' "$work/push.json")

# Warm cache: another empty store, pins and step outputs from the registry.
t3=$(now)
"$bin" --store "$work/warm" build "$target" --cache "$cache" --cache-key "$work/bench.key.pub" \
  --output "$work/out-warm" >"$work/warm.log" 2>&1
t4=$(now)
pulled=$(grep -o 'cache: pulled.*' "$work/warm.log" || echo "cache: (no figures)")

if cmp -s "$work/out-cold/SHA256SUMS" "$work/out-warm/SHA256SUMS"; then same=identical; else same=DIFFERENT; fi

awk -v cold="$(echo "$t1 - $t0" | bc)" -v push="$(echo "$t2 - $t1" | bc)" \
    -v warm="$(echo "$t4 - $t3" | bc)" -v mirror="$cold_blobs" -v pushed="$pushed" \
    -v target="$target" -v same="$same" 'BEGIN {
  printf "%-48s %9.1f s   %8.1f MiB from the mirror\n", "hermetic build " target " (cold, empty store)", cold, mirror / 1048576
  printf "%-48s %9.1f s   %8.1f MiB to the registry\n", "hermetic cache push", push, pushed / 1048576
  printf "%-48s %9.1f s\n", "hermetic build " target " (warm cache, empty store)", warm
  if (warm > 0) printf "speed-up of the warm-cache build: %.1fx; outputs %s\n", cold / warm, same
}'
echo "$pulled"
